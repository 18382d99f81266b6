//! Neighbours: resolution (ARP for IPv4, NDP for IPv6), the held packets, ageing, host
//! routes for neighbours on connected networks, and the frames that ask and announce.
//!
//! Neighbour life cycle (ARP for IPv4, NDP for IPv6):
//! * `Incomplete`: a request went out; up to [`HOLD`] packets wait; retried every second,
//!   [`TRIES`] times, then the held packets get ICMP host unreachable and the entry goes.
//! * `Reachable`: the adjacency carries the MAC. After `neighbor_timeout` without being
//!   heard from, a probe goes out and the entry is `Incomplete` again (the adjacency keeps
//!   the old MAC meanwhile, so traffic is not interrupted), and removed if nobody answers.
//! * `Static`: from the configuration, never aged.
//!
//! A neighbour on a connected network gets a host route (/32, /128) to its own adjacency,
//! so after the first packet the workers never punt to resolve it again.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use lpm::rib::Source;

use crate::adjacency::Adjacency;
use crate::pipeline::icmp;
use crate::wire::{arp, eth, icmp4, icmp6, ipv4, ipv6, ndp, Mac, BROADCAST};

use super::Control;

/// Packets held per unresolved neighbour.
pub const HOLD: usize = 3;
/// Resolution attempts before giving up.
pub const TRIES: u32 = 3;
pub(super) const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(super) enum State {
    Incomplete {
        tries: u32,
        next_try: Instant,
        held: VecDeque<Vec<u8>>,
    },
    Reachable {
        mac: Mac,
        heard: Instant,
    },
    Static {
        mac: Mac,
    },
}

#[derive(Debug)]
pub(super) struct Neighbor {
    pub(super) port: u16,
    pub(super) adjacency: u32,
    pub(super) state: State,
    /// Whether a host route points at it (neighbours on connected networks).
    pub(super) host_route: bool,
    /// Routes (static) that use it as gateway: it stays while they exist.
    pub(super) gateway_of: usize,
}

#[derive(Debug, Default)]
pub(super) struct ControlStats {
    pub(super) arp_requests: u64,
    pub(super) ns_sent: u64,
    pub(super) resolved: u64,
    pub(super) failed: u64,
    pub(super) held_dropped: u64,
    pub(super) held_sent: u64,
}

impl Control {
    /// The port whose connected network holds `ip`.
    pub(super) fn port_for(&self, ip: IpAddr) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| match ip {
                IpAddr::V4(a) => p.v4.iter().any(|n| n.contains(&a)),
                IpAddr::V6(a) => p.v6.iter().any(|n| n.contains(&a)) || (a.is_unicast_link_local()),
            })
            .map(|p| p as u16)
    }

    /// The neighbour entry for `ip` on `port`, created `Incomplete` if new.
    pub(super) fn neighbor(&mut self, port: u16, ip: IpAddr) -> Result<&mut Neighbor, String> {
        if !self.neighbors.contains_key(&ip) {
            let adjacency = self.allocate(Adjacency::Incomplete { port, ip })?;
            let state = State::Incomplete {
                tries: 0,
                next_try: Instant::now(),
                held: VecDeque::new(),
            };
            self.neighbors.insert(
                ip,
                Neighbor {
                    port,
                    adjacency,
                    state,
                    host_route: false,
                    gateway_of: 0,
                },
            );
        }
        self.neighbors
            .get_mut(&ip)
            .ok_or_else(|| "neighbour vanished".to_string())
    }

    pub(super) fn set_static_neighbor(
        &mut self,
        port: u16,
        ip: IpAddr,
        mac: Mac,
    ) -> Result<(), String> {
        let n = self.neighbor(port, ip)?;
        n.state = State::Static { mac };
        let adjacency = n.adjacency;
        self.adjacencies
            .set(adjacency, Adjacency::Neighbor { port, ip, mac });
        self.ensure_host_route(ip)
    }

    pub(super) fn ensure_host_route(&mut self, ip: IpAddr) -> Result<(), String> {
        let Some(n) = self.neighbors.get_mut(&ip) else {
            return Ok(());
        };
        if n.host_route {
            return Ok(());
        }
        n.host_route = true;
        let adjacency = n.adjacency;
        self.add(IpNet::from(ip), Source::Neighbor, adjacency)
    }

    pub(super) fn resolve(&mut self, port: u16, ip: IpAddr, frame: Vec<u8>) {
        let Ok(n) = self.neighbor(port, ip) else {
            return;
        };
        let mut overflow = false;
        let request = match &mut n.state {
            State::Reachable { mac, .. } | State::Static { mac } => {
                // Resolved while the packet was on its way here.
                let mac = *mac;
                self.send_held(port, mac, frame);
                return;
            }
            State::Incomplete { tries, held, .. } => {
                if held.len() < HOLD {
                    held.push_back(frame);
                } else {
                    overflow = true;
                }
                *tries == 0
            }
        };
        if overflow {
            self.stats.held_dropped += 1;
        }
        // A glean'd destination on a connected network gets its own host route right away,
        // so further packets come here with the neighbour named, not as new gleans.
        if self.port_for(ip).is_some() {
            let _ = self.ensure_host_route(ip);
        }
        if request {
            self.solicit(ip, None);
            if let Some(State::Incomplete {
                tries, next_try, ..
            }) = self.neighbors.get_mut(&ip).map(|n| &mut n.state)
            {
                *tries = 1;
                *next_try = Instant::now() + RETRY;
            }
        }
    }

    pub(super) fn learned(&mut self, port: u16, ip: IpAddr, mac: Mac) {
        let now = Instant::now();
        let held = match self.neighbors.get_mut(&ip) {
            Some(n) => match &mut n.state {
                State::Static { .. } => return,
                State::Reachable { mac: old, heard } => {
                    *heard = now;
                    if *old == mac {
                        return;
                    }
                    tracing::warn!(%ip, port, old = %crate::config::format_mac(old), new = %crate::config::format_mac(&mac), "neighbour changed its MAC");
                    *old = mac;
                    VecDeque::new()
                }
                State::Incomplete { held, .. } => {
                    let held = std::mem::take(held);
                    n.state = State::Reachable { mac, heard: now };
                    self.stats.resolved += 1;
                    tracing::info!(%ip, port, mac = %crate::config::format_mac(&mac), "neighbour resolved");
                    held
                }
            },
            None => {
                // Learn from a request to us or an unsolicited answer: the host is talking to us.
                let Ok(n) = self.neighbor(port, ip) else {
                    return;
                };
                n.state = State::Reachable { mac, heard: now };
                let _ = self.ensure_host_route(ip);
                VecDeque::new()
            }
        };
        let Some(n) = self.neighbors.get(&ip) else {
            return;
        };
        let (adjacency, port) = (n.adjacency, n.port);
        self.adjacencies
            .set(adjacency, Adjacency::Neighbor { port, ip, mac });
        for frame in held {
            self.send_held(port, mac, frame);
        }
    }

    pub(super) fn send_held(&mut self, port: u16, mac: Mac, mut frame: Vec<u8>) {
        if frame.len() < eth::LEN {
            return;
        }
        frame[0..6].copy_from_slice(&mac);
        if let Some(tx) = self.tx.get(port as usize) {
            if tx.send(&frame).is_ok() {
                self.stats.held_sent += 1;
            }
        }
    }

    /// Retries, gives up, ages.
    pub fn tick(&mut self, now: Instant) {
        let mut retry = Vec::new();
        let mut failed = Vec::new();
        let mut probe = Vec::new();
        for (ip, n) in &self.neighbors {
            match &n.state {
                State::Incomplete {
                    tries, next_try, ..
                } if *tries > 0 && *next_try <= now => {
                    if *tries >= TRIES {
                        failed.push(*ip);
                    } else {
                        retry.push(*ip);
                    }
                }
                State::Reachable { heard, mac }
                    if now.duration_since(*heard) >= self.neighbor_timeout =>
                {
                    probe.push((*ip, *mac))
                }
                _ => {}
            }
        }
        for ip in retry {
            self.solicit(ip, None);
            if let Some(State::Incomplete {
                tries, next_try, ..
            }) = self.neighbors.get_mut(&ip).map(|n| &mut n.state)
            {
                *tries += 1;
                *next_try = now + RETRY;
            }
        }
        for (ip, mac) in probe {
            // Unicast probe to the MAC we have; the adjacency keeps it meanwhile.
            self.solicit(ip, Some(mac));
            if let Some(n) = self.neighbors.get_mut(&ip) {
                n.state = State::Incomplete {
                    tries: 1,
                    next_try: now + RETRY,
                    held: VecDeque::new(),
                };
            }
        }
        for ip in failed {
            self.give_up(ip);
        }
    }

    /// Resolution failed: ICMP host unreachable for what was held; the entry goes (or, if
    /// routes use it as their gateway, stays incomplete for the next packet to retry).
    pub(super) fn give_up(&mut self, ip: IpAddr) {
        self.stats.failed += 1;
        tracing::info!(%ip, tries = TRIES, "neighbour resolution failed");
        let Some(n) = self.neighbors.get_mut(&ip) else {
            return;
        };
        let held = match &mut n.state {
            State::Incomplete { held, .. } => std::mem::take(held),
            _ => VecDeque::new(),
        };
        let (port, adjacency, gateway, host_route) =
            (n.port, n.adjacency, n.gateway_of > 0, n.host_route);
        for frame in held {
            self.host_unreachable(port, &frame);
        }
        if gateway {
            self.adjacencies
                .set(adjacency, Adjacency::Incomplete { port, ip });
            if let Some(n) = self.neighbors.get_mut(&ip) {
                n.state = State::Incomplete {
                    tries: 0,
                    next_try: Instant::now(),
                    held: VecDeque::new(),
                };
            }
            return;
        }
        if host_route {
            let _ = self.remove(IpNet::from(ip), Source::Neighbor);
        }
        self.neighbors.remove(&ip);
        self.release(adjacency);
    }

    /// ICMP host unreachable (address unreachable for IPv6) about a held frame, sent to its
    /// source through the FIB.
    pub(super) fn host_unreachable(&mut self, port: u16, frame: &[u8]) {
        if frame.len() < eth::LEN + 20 {
            return;
        }
        let ip = &frame[eth::LEN..];
        let v4 = eth::ethertype(frame) == eth::TYPE_IPV4;
        // The source side: the port whose network routes back to the sender.
        let reply = if v4 {
            if !icmp::may_answer_v4(ip) {
                return;
            }
            let back = self.rib4.fib().lookup(ipv4::src(ip));
            let src = self
                .port_of_adjacency(back)
                .and_then(|p| self.ports[p as usize].v4_source())
                .or_else(|| self.ports[port as usize].v4_source());
            src.and_then(|src| {
                icmp::error_v4(
                    &mut self.pool,
                    src,
                    ip,
                    icmp4::DEST_UNREACHABLE,
                    icmp4::CODE_HOST_UNREACHABLE,
                    [0; 4],
                )
            })
        } else {
            if !icmp::may_answer_v6(ip) {
                return;
            }
            let back = self.rib6.fib().lookup(ipv6::src(ip));
            let src = self
                .port_of_adjacency(back)
                .map(|p| self.ports[p as usize].v6_source())
                .unwrap_or(self.ports[port as usize].v6_source());
            icmp::error_v6(
                &mut self.pool,
                src,
                ip,
                icmp6::DEST_UNREACHABLE,
                icmp6::CODE_ADDR_UNREACHABLE,
                [0; 4],
            )
        };
        let Some(reply) = reply else { return };
        let bytes = reply.data().to_vec();
        self.pool.free(reply);
        self.send_routed(bytes);
    }

    pub(super) fn port_of_adjacency(&self, adjacency: Option<u32>) -> Option<u16> {
        match self.adjacencies.get(adjacency?)? {
            Adjacency::Glean { port }
            | Adjacency::Incomplete { port, .. }
            | Adjacency::Neighbor { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// Sends a frame tern built to where the FIB says, if the neighbour is resolved.
    pub(super) fn send_routed(&mut self, mut frame: Vec<u8>) {
        let ip = &frame[eth::LEN..];
        let adjacency = if eth::ethertype(&frame) == eth::TYPE_IPV4 {
            self.rib4.fib().lookup(ipv4::dst(ip))
        } else {
            self.rib6.fib().lookup(ipv6::dst(ip))
        };
        if let Some(Adjacency::Neighbor { port, mac, .. }) =
            adjacency.and_then(|a| self.adjacencies.get(a)).cloned()
        {
            eth::set_addrs(&mut frame, &mac, &self.ports[port as usize].mac);
            if let Some(tx) = self.tx.get(port as usize) {
                let _ = tx.send(&frame);
            }
        }
    }

    /// Sends an ARP request or an NDP neighbour solicitation for `ip` (unicast to `mac`
    /// when refreshing a known neighbour).
    pub(super) fn solicit(&mut self, ip: IpAddr, mac: Option<Mac>) {
        let Some(n) = self.neighbors.get(&ip) else {
            return;
        };
        let port = &self.ports[n.port as usize];
        let frame = match ip {
            IpAddr::V4(target) => {
                let Some(src) = port
                    .v4
                    .iter()
                    .find(|net| net.contains(&target))
                    .or(port.v4.first())
                    .map(|n| n.addr())
                else {
                    return;
                };
                self.stats.arp_requests += 1;
                arp_frame(
                    port.mac,
                    mac.unwrap_or(BROADCAST),
                    arp::OP_REQUEST,
                    src,
                    port.mac,
                    target,
                    [0; 6],
                )
            }
            IpAddr::V6(target) => {
                let src = port
                    .v6
                    .iter()
                    .find(|net| net.contains(&target))
                    .map(|n| n.addr())
                    .unwrap_or(port.link_local);
                self.stats.ns_sent += 1;
                ns_frame(port.mac, src, target, mac)
            }
        };
        if let Some(tx) = self.tx.get(n.port as usize) {
            let _ = tx.send(&frame);
        }
    }

    /// Gratuitous ARP and unsolicited neighbour advertisements for every address.
    pub(super) fn announce(&self) {
        for (index, port) in self.ports.iter().enumerate() {
            let Some(tx) = self.tx.get(index) else {
                continue;
            };
            for net in &port.v4 {
                let a = net.addr();
                let _ = tx.send(&arp_frame(
                    port.mac,
                    BROADCAST,
                    arp::OP_REQUEST,
                    a,
                    port.mac,
                    a,
                    [0; 6],
                ));
            }
            for a in port.v6.iter().map(|n| n.addr()).chain([port.link_local]) {
                let _ = tx.send(&na_frame(port.mac, a));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn arp_frame(
    src_mac: Mac,
    dst_mac: Mac,
    op: u16,
    sender_ip: Ipv4Addr,
    sender_mac: Mac,
    target_ip: Ipv4Addr,
    target_mac: Mac,
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    eth::write(&mut f, &dst_mac, &src_mac, eth::TYPE_ARP);
    arp::write(
        &mut f[eth::LEN..],
        &arp::Arp {
            op,
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        },
    );
    f
}

/// Neighbour solicitation for `target` from `src`, multicast to its solicited-node group
/// (or unicast to `mac` when refreshing), with our source link-layer address option.
pub(super) fn ns_frame(
    port_mac: Mac,
    src: Ipv6Addr,
    target: Ipv6Addr,
    mac: Option<Mac>,
) -> Vec<u8> {
    let (dst, dst_mac) = match mac {
        Some(m) => (target, m),
        None => (
            ipv6::solicited_node(target),
            ipv6::multicast_mac(ipv6::solicited_node(target)),
        ),
    };
    let mut f = vec![0u8; ndp::FRAME_LEN];
    let m = ndp::Message {
        kind: icmp6::NEIGHBOR_SOLICIT,
        flags: 0,
        target,
        mac: port_mac,
    };
    ndp::write_frame(&mut f, &dst_mac, src, dst, &m);
    f
}

/// Unsolicited neighbour advertisement of `addr` to all nodes (Router + Override).
pub(super) fn na_frame(port_mac: Mac, addr: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut f = vec![0u8; ndp::FRAME_LEN];
    let m = ndp::Message {
        kind: icmp6::NEIGHBOR_ADVERT,
        flags: ndp::FLAG_ROUTER | ndp::FLAG_OVERRIDE,
        target: addr,
        mac: port_mac,
    };
    ndp::write_frame(&mut f, &ipv6::multicast_mac(all_nodes), addr, all_nodes, &m);
    f
}
