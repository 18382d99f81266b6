//! Forwarding: the adjacency a route points at, memoized per burst (the hop, the tunnel's
//! underlay neighbour), TTL, MTU, NAT post-routing, the MAC rewrite, encapsulation into a
//! tunnel, and the punt of a packet whose neighbour is unresolved. The ECMP hash.

use std::net::IpAddr;

use lpm::NO_ROUTE;

use crate::adjacency::Adjacency;
use crate::buf::Frame;
use crate::control_msg::ControlMsg;
use crate::counters::{DropReason, Event};
use crate::pipeline::{mtu, rewrite, ttl, tunnel, NatMark};
use crate::wire::{eth, icmp4, icmp6, ipv4, ipv6, Mac};

use super::Worker;

/// Where the adjacency of a packet sends it, copied out of the table so no reference into
/// it outlives the decision.
#[derive(Clone, Copy)]
pub(super) enum Hop {
    Local,
    Broadcast,
    Send {
        port: u16,
        mac: Mac,
    },
    /// Needs resolution of `ip` (`None`: the packet's own destination, a glean).
    Resolve {
        port: u16,
        ip: Option<IpAddr>,
    },
    /// Into the tunnel with this index, then by the next hop `via`.
    Tunnel {
        tunnel: u16,
        via: u32,
    },
    Missing,
}

/// Where a forwarded packet leaves: a port (with the next hop's MAC, or the address still
/// to resolve), or a tunnel (encapsulate, then route the outer packet).
#[derive(Clone, Copy)]
pub(super) enum Egress {
    Port {
        port: u16,
        target: Result<Mac, Option<IpAddr>>,
    },
    Tunnel {
        tunnel: u16,
        via: u32,
    },
}

/// A tunnel's underlay next hop resolved to a neighbour on a port: its Ethernet addresses
/// and the port's MTU, all an outer packet needs to leave.
#[derive(Clone, Copy)]
pub(super) struct Underlay {
    pub(super) port: u16,
    pub(super) mtu: u16,
    /// Destination and source MAC, as the Ethernet header has them.
    pub(super) macs: [u8; 12],
}

/// The destination address of the IP packet in `frame`.
pub(super) fn destination(frame: &[u8]) -> IpAddr {
    let ip = &frame[eth::LEN..];
    if eth::ethertype(frame) == eth::TYPE_IPV4 {
        IpAddr::V4(ipv4::dst(ip))
    } else {
        IpAddr::V6(ipv6::dst(ip))
    }
}

/// A flow hash over addresses, protocol and (unfragmented) ports, for ECMP member choice.
pub(super) fn flow_hash(frame: &[u8]) -> u32 {
    let ip = &frame[eth::LEN..];
    let (addrs, proto, l4) = if eth::ethertype(frame) == eth::TYPE_IPV4 {
        let ihl = ipv4::header_len(ip);
        let l4 = if !ipv4::is_fragment(ip) {
            ip.get(ihl..ihl + 4)
        } else {
            None
        };
        (&ip[12..20], ipv4::proto(ip), l4)
    } else {
        (
            &ip[8..40],
            ipv6::next_header(ip),
            ip.get(ipv6::LEN..ipv6::LEN + 4),
        )
    };
    let mut h: u32 = 0x811c9dc5 ^ proto as u32;
    for &b in addrs.iter().chain(l4.unwrap_or(&[])) {
        h = (h ^ b as u32).wrapping_mul(0x01000193);
    }
    h ^ (h >> 16)
}

impl Worker {
    /// [`Self::hop`] through the burst's memo (`burst_hop`).
    pub(super) fn memoized_hop(&mut self, next_hop: u32, frame: &Frame) -> Hop {
        if let Some(hop) = self.burst_hop.get(next_hop) {
            return hop;
        }
        let (hop, every_packet) = self.hop_for(next_hop, frame);
        if every_packet {
            self.burst_hop.remember(next_hop, hop);
        }
        hop
    }

    pub(super) fn hop(&self, next_hop: u32, frame: &Frame) -> Hop {
        self.hop_for(next_hop, frame).0
    }

    /// Where `next_hop` sends `frame`, and whether that holds for every packet to it (all
    /// adjacencies but an ECMP group, whose member depends on the flow).
    pub(super) fn hop_for(&self, next_hop: u32, frame: &Frame) -> (Hop, bool) {
        let summarize = |adj: &Adjacency| match *adj {
            Adjacency::Local => Some(Hop::Local),
            Adjacency::Broadcast => Some(Hop::Broadcast),
            Adjacency::Glean { port } => Some(Hop::Resolve { port, ip: None }),
            Adjacency::Incomplete { port, ip } => Some(Hop::Resolve { port, ip: Some(ip) }),
            Adjacency::Neighbor { port, mac, .. } => Some(Hop::Send { port, mac }),
            Adjacency::Tunnel { tunnel, via } => Some(Hop::Tunnel { tunnel, via }),
            Adjacency::Ecmp(_) => None,
        };
        let Some(adj) = self.adjacencies.get(&self.qsbr, next_hop) else {
            return (Hop::Missing, false);
        };
        if let Some(hop) = summarize(adj) {
            return (hop, true);
        }
        let Adjacency::Ecmp(members) = adj else {
            return (Hop::Missing, false);
        };
        if members.is_empty() {
            return (Hop::Missing, false);
        }
        let member = members[(flow_hash(frame.data()) % members.len() as u32) as usize];
        let hop = self
            .adjacencies
            .get(&self.qsbr, member)
            .and_then(summarize)
            .unwrap_or(Hop::Missing);
        (hop, false)
    }

    /// TTL, MTU (ICMP too big), SNAT, IPv4 fragmentation, then out through `egress`.
    pub(super) fn forward(&mut self, mut frame: Frame, egress: Egress, nat: NatMark) {
        let v4 = eth::ethertype(frame.data()) == eth::TYPE_IPV4;
        let alive = if v4 {
            ttl::decrement_v4(frame.data_mut())
        } else {
            ttl::decrement_v6(frame.data_mut())
        };
        if !alive {
            if v4 {
                self.icmp_error(&frame, icmp4::TIME_EXCEEDED, 0, [0; 4]);
            } else {
                self.icmp_error(&frame, icmp6::TIME_EXCEEDED, 0, [0; 4]);
            }
            return self.drop(frame, DropReason::TtlExceeded);
        }
        let (mtu, slot) = match egress {
            Egress::Port { port, .. } => (
                self.ports.get(port as usize).map_or(0, |p| p.mtu),
                port as usize,
            ),
            Egress::Tunnel { tunnel, .. } => (
                self.tunnels.get(tunnel).map_or(0, |t| t.mtu()),
                self.ports.len() + tunnel as usize,
            ),
        };
        let fits = mtu::fits(&frame, mtu);
        // Too big with DF (or IPv6): the error goes to the untranslated source, so this
        // comes before SNAT.
        if !fits && (!v4 || mtu::dont_fragment(&frame)) {
            if v4 {
                let [hi, lo] = mtu.to_be_bytes();
                let rest = [0, 0, hi, lo];
                self.icmp_error(
                    &frame,
                    icmp4::DEST_UNREACHABLE,
                    icmp4::CODE_FRAG_NEEDED,
                    rest,
                );
            } else {
                self.icmp_error(&frame, icmp6::PACKET_TOO_BIG, 0, (mtu as u32).to_be_bytes());
            }
            return self.drop(frame, DropReason::TooBig);
        }
        if v4 {
            if let Some(stage) = &mut self.nat {
                let ingress = frame.ingress as usize;
                match stage.postrouting(&mut frame, nat, ingress, slot) {
                    Ok(true) => self.stats.event(Event::NatTranslated),
                    Ok(false) => {}
                    Err((reason, refuse)) => {
                        if refuse {
                            let code = icmp4::CODE_ADMIN_PROHIBITED;
                            self.icmp_error(&frame, icmp4::DEST_UNREACHABLE, code, [0; 4]);
                        }
                        return self.drop(frame, reason);
                    }
                }
            }
        }
        if !fits {
            // A worker-owned scratch list: fragmenting allocates no Vec per packet.
            let mut fragments = std::mem::take(&mut self.fragments);
            let Some(count) = mtu::fragment_v4(&frame, mtu, &mut self.pool, &mut fragments) else {
                self.fragments = fragments;
                return self.drop(frame, DropReason::NoBuffer);
            };
            self.stats.event(Event::Fragmented);
            self.stats.events[Event::FragmentsSent as usize] += count as u64;
            if !self.originating {
                self.stats.ports[frame.port as usize].forwarded += 1;
            }
            self.pool.free(frame);
            self.as_originator(|w| {
                for f in fragments.drain(..) {
                    w.transmit(f, egress);
                }
            });
            self.fragments = fragments;
            return;
        }
        self.transmit(frame, egress);
    }

    #[inline]
    pub(super) fn transmit(&mut self, frame: Frame, egress: Egress) {
        match egress {
            Egress::Port { port, target } => self.emit(frame, port, target),
            Egress::Tunnel { tunnel, via } => self.encapsulate(frame, tunnel, via),
        }
    }

    /// Encapsulates into tunnel `t` and routes the outer packet to the remote endpoint.
    /// The outer route must leave by a port: a route to the remote through a tunnel would
    /// loop, and is dropped and counted. Out of line, so plain forwarding does not carry
    /// its code and registers.
    #[inline(never)]
    pub(super) fn encapsulate(&mut self, mut frame: Frame, t: u16, via: u32) {
        let Some(tunnel) = self.tunnels.get(t) else {
            return self.drop(frame, DropReason::BadAdjacency);
        };
        let inner_bytes = frame.len() - eth::LEN;
        if let Err(reason) = tunnel::encap(&mut frame, tunnel) {
            return self.drop(frame, reason);
        }
        // The adjacency is stacked on the remote's next hop: no FIB lookup here, and
        // mostly not even the adjacency table (`burst_underlay`).
        let underlay = match self.burst_underlay.get(via) {
            Some(u) => u,
            None => match self.underlay_neighbor(via, &frame) {
                Ok(u) => u,
                Err(hop) => return self.encapsulated_unresolved(frame, t, via, hop, inner_bytes),
            },
        };
        if !self.outer_fits(&frame, t, underlay.mtu) {
            return self.drop(frame, DropReason::TooBig);
        }
        self.count_encapsulated(t, inner_bytes);
        frame.data_mut()[..12].copy_from_slice(&underlay.macs);
        self.count_forwarded();
        self.tx[underlay.port as usize].push(frame);
    }

    /// The underlay next hop `via` when it is a resolved neighbour on a port, memoized
    /// for the burst when every packet to it goes there (not ECMP); else the hop it is.
    pub(super) fn underlay_neighbor(&mut self, via: u32, frame: &Frame) -> Result<Underlay, Hop> {
        let (hop, every_packet) = self.hop_for(via, frame);
        let Hop::Send { port, mac } = hop else {
            return Err(hop);
        };
        let p = self.ports.get(port as usize).ok_or(hop)?;
        let mut macs = [0; 12];
        macs[..6].copy_from_slice(&mac);
        macs[6..].copy_from_slice(&p.mac);
        let u = Underlay {
            port,
            mtu: p.mtu,
            macs,
        };
        if every_packet {
            self.burst_underlay.remember(via, u);
        }
        Ok(u)
    }

    /// An encapsulated frame whose underlay next hop is not a resolved neighbour: punted
    /// for resolution, or dropped (no route, a loop into a tunnel, a local address).
    #[cold]
    pub(super) fn encapsulated_unresolved(
        &mut self,
        frame: Frame,
        t: u16,
        via: u32,
        hop: Hop,
        inner_bytes: usize,
    ) {
        if via == NO_ROUTE {
            return self.drop(frame, DropReason::NoRoute);
        }
        let (port, ip) = match hop {
            Hop::Resolve { port, ip } => (port, ip),
            Hop::Tunnel { .. } => return self.drop(frame, DropReason::TunnelLoop),
            Hop::Local | Hop::Broadcast => return self.drop(frame, DropReason::LocalUnhandled),
            Hop::Send { .. } | Hop::Missing => return self.drop(frame, DropReason::BadAdjacency),
        };
        let port_mtu = self.ports.get(port as usize).map_or(0, |p| p.mtu);
        if !self.outer_fits(&frame, t, port_mtu) {
            return self.drop(frame, DropReason::TooBig);
        }
        self.count_encapsulated(t, inner_bytes);
        self.emit(frame, port, Err(ip));
    }

    /// Whether the outer packet fits the egress port. If not, the tunnel MTU is configured
    /// above what the port carries: the port's MTU is learnt as the tunnel's path MTU, so
    /// the next packets are refused or fragmented before encapsulation.
    #[inline(always)]
    pub(super) fn outer_fits(&mut self, frame: &Frame, t: u16, port_mtu: u16) -> bool {
        if mtu::fits(frame, port_mtu) {
            return true;
        }
        let lowered = self
            .tunnels
            .get(t)
            .is_some_and(|tunnel| tunnel.lower_path_mtu(port_mtu as u32));
        if lowered {
            self.stats.event(Event::TunnelMtuLowered);
        }
        false
    }

    /// Counts a packet of `inner_bytes` sent into tunnel `t`.
    #[inline(always)]
    pub(super) fn count_encapsulated(&mut self, t: u16, inner_bytes: usize) {
        self.stats.event(Event::TunnelEncapsulated);
        if let Some(c) = self.stats.ports.get_mut(self.ports.len() + t as usize) {
            c.tx_packets += 1;
            c.tx_bytes += inner_bytes as u64;
        }
    }

    /// Rewrites and queues a frame on `out`, or punts it for neighbour resolution.
    /// Inlined, with the punt out of line: a call here cost 16 instructions of argument
    /// moves and register saves per forwarded packet.
    #[inline]
    pub(super) fn emit(&mut self, mut frame: Frame, out: u16, target: Result<Mac, Option<IpAddr>>) {
        let Some(port) = self.ports.get(out as usize) else {
            return self.drop(frame, DropReason::BadAdjacency);
        };
        match target {
            Ok(mac) => {
                rewrite::macs(frame.data_mut(), &mac, &port.mac);
                self.count_forwarded();
                self.tx[out as usize].push(frame);
            }
            Err(ip) => self.punt_unresolved(frame, out, ip),
        }
    }

    /// Hands a frame whose neighbour (`ip`, or its own destination) is unresolved to the
    /// control plane, which resolves it and sends the frame on.
    /// It looks the port up again rather than take its MAC from `emit`: passing the MAC
    /// made `emit` copy it on every forwarded packet (3 instructions each, callgrind).
    #[cold]
    pub(super) fn punt_unresolved(&mut self, mut frame: Frame, out: u16, ip: Option<IpAddr>) {
        let Some(mac) = self.ports.get(out as usize).map(|p| p.mac) else {
            return self.drop(frame, DropReason::BadAdjacency);
        };
        let ip = ip.unwrap_or_else(|| destination(frame.data()));
        frame.data_mut()[6..12].copy_from_slice(&mac);
        let msg = ControlMsg::Resolve {
            port: out,
            ip,
            frame: frame.data().to_vec(),
        };
        if self.control.try_send(msg).is_ok() {
            self.stats.event(Event::Punted);
            if !self.originating {
                self.stats.ports[frame.port as usize].punted += 1;
            }
            self.pool.free(frame);
        } else {
            self.drop(frame, DropReason::NeighborUnresolved);
        }
    }
}
