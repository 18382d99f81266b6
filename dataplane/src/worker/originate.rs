//! What the worker answers or originates itself: local delivery (ARP, NDP, ping to our
//! addresses, learned neighbours), ICMP errors (rate-limited) and their routing, ICMP
//! about tunnels' outer packets.

use crate::buf::Frame;
use crate::control_msg::ControlMsg;
use crate::counters::{DropReason, Event};
use crate::pipeline::icmp::{self};
use crate::pipeline::local::{self, Outcome};
use crate::pipeline::tunnel;
use crate::wire::{eth, icmp4, icmp6, ipv4, ipv6};

use super::{Hop, Worker};

impl Worker {
    pub(super) fn local_v6(&mut self, mut frame: Frame) {
        let port = frame.port;
        let (outcome, learned) = local::ipv6(&mut frame, &self.ports[port as usize]);
        self.share_learned(&frame, &outcome, learned);
        self.learn(frame.port, learned);
        self.local_outcome(frame, outcome);
    }

    /// An ARP reply or neighbour advertisement tern learned from goes to the kernel too,
    /// which resolves its peers with its own requests (see `io::host`).
    pub(super) fn share_learned(
        &mut self,
        frame: &Frame,
        outcome: &Outcome,
        learned: local::Learned,
    ) {
        if let (Some(host), Outcome::Consumed, Some(_)) = (&self.host, outcome, learned) {
            host.deliver(frame.port, frame.data());
        }
    }

    /// An ICMP error to us about an outer packet of one of our tunnels: lowers the
    /// tunnel's path MTU and relays an error to the inner source (RFC 2003 §4). Returns
    /// whether the packet was such an error (and is consumed).
    pub(super) fn tunnel_icmp(&mut self, frame: &Frame) -> bool {
        if self.tunnels.is_empty() {
            return false;
        }
        let ip = &frame.data()[eth::LEN..];
        let Some((quoted, too_big)) = tunnel::quoted_outer(ip) else {
            return false;
        };
        let Some(e) = tunnels::icmp::outer_error(&self.tunnels, quoted, too_big) else {
            return false;
        };
        if e.mtu_lowered {
            self.stats.event(Event::TunnelMtuLowered);
        }
        if let Some(relay) = e.relay {
            let (kind, code, rest) = tunnel::relay_fields(relay, e.inner_v6);
            let inner = &quoted[e.inner..];
            self.stats.event(Event::TunnelIcmpRelayed);
            self.icmp_error_about(frame.port, inner, !e.inner_v6, kind, code, rest);
        }
        true
    }

    pub(super) fn local_outcome(&mut self, frame: Frame, outcome: Outcome) {
        if !matches!(outcome, Outcome::Drop(_)) {
            self.count_local(&frame);
        }
        match outcome {
            Outcome::ReplyOnPort => {
                let port = frame.port;
                let e = if eth::ethertype(frame.data()) == eth::TYPE_ARP {
                    Event::ArpReplied
                } else {
                    Event::NdpReplied
                };
                self.stats.event(e);
                self.tx[port as usize].push(frame);
            }
            Outcome::ReplyRouted => {
                self.stats.event(Event::EchoReplied);
                self.send_originated(frame);
            }
            Outcome::ToHost { unreachable } => {
                if self
                    .host
                    .as_ref()
                    .is_some_and(|h| h.deliver(frame.port, frame.data()))
                {
                    self.stats.event(Event::ToHost);
                    self.pool.free(frame);
                    return;
                }
                if !unreachable {
                    self.drop(frame, DropReason::LocalUnhandled);
                    return;
                }
                if eth::ethertype(frame.data()) == eth::TYPE_IPV4 {
                    self.icmp_error(
                        &frame,
                        icmp4::DEST_UNREACHABLE,
                        icmp4::CODE_PORT_UNREACHABLE,
                        [0; 4],
                    );
                } else {
                    self.icmp_error(
                        &frame,
                        icmp6::DEST_UNREACHABLE,
                        icmp6::CODE_PORT_UNREACHABLE,
                        [0; 4],
                    );
                }
                self.pool.free(frame);
            }
            Outcome::Consumed => self.pool.free(frame),
            Outcome::Drop(reason) => self.drop(frame, reason),
        }
    }

    pub(super) fn no_route(&mut self, frame: Frame) {
        if eth::ethertype(frame.data()) == eth::TYPE_IPV4 {
            self.icmp_error(
                &frame,
                icmp4::DEST_UNREACHABLE,
                icmp4::CODE_NET_UNREACHABLE,
                [0; 4],
            );
        } else {
            self.icmp_error(
                &frame,
                icmp6::DEST_UNREACHABLE,
                icmp6::CODE_NO_ROUTE,
                [0; 4],
            );
        }
        self.drop(frame, DropReason::NoRoute);
    }

    /// Sends an ICMP error about `about` (rate limit and RFC rules permitting), sourced from
    /// the address of the port it arrived on.
    pub(super) fn icmp_error(&mut self, about: &Frame, kind: u8, code: u8, rest: [u8; 4]) {
        let v4 = eth::ethertype(about.data()) == eth::TYPE_IPV4;
        self.icmp_error_about(about.port, &about.data()[eth::LEN..], v4, kind, code, rest);
    }

    /// Sends an ICMP error about the IP packet `ip` that arrived on `in_port`.
    pub(super) fn icmp_error_about(
        &mut self,
        in_port: u16,
        ip: &[u8],
        v4: bool,
        kind: u8,
        code: u8,
        rest: [u8; 4],
    ) {
        let Some(port) = self.ports.get(in_port as usize) else {
            return;
        };
        let allowed = if v4 {
            icmp::may_answer_v4(ip)
        } else {
            icmp::may_answer_v6(ip)
        };
        if !allowed {
            return;
        }
        if !self.icmp.allow() {
            self.stats.event(Event::IcmpRateLimited);
            return;
        }
        let built = if v4 {
            port.v4_source()
                .and_then(|src| icmp::error_v4(&mut self.pool, src, ip, kind, code, rest))
        } else {
            icmp::error_v6(&mut self.pool, port.v6_source(), ip, kind, code, rest)
        };
        match built {
            Some(mut reply) => {
                reply.port = in_port;
                if let (true, Some(stage)) = (v4, &mut self.nat) {
                    // About a packet the NAT translated: quote what its sender sent.
                    stage
                        .shard
                        .originated_error(&mut reply.data_mut()[eth::LEN..]);
                }
                self.stats.event(Event::IcmpSent);
                self.send_originated(reply);
            }
            None => {
                let origin = self.stats.origin();
                self.stats.drop(origin, DropReason::NoBuffer)
            }
        }
    }

    /// Routes a packet tern originated (no TTL decrement).
    pub(super) fn send_originated(&mut self, frame: Frame) {
        self.as_originator(|w| w.route_originated(frame));
    }

    /// Runs `f` with the frames it sends counted as tern's own (see `originating`).
    pub(super) fn as_originator<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let was = std::mem::replace(&mut self.originating, true);
        let r = f(self);
        self.originating = was;
        r
    }

    pub(super) fn route_originated(&mut self, frame: Frame) {
        let data = frame.data();
        let next_hop = if eth::ethertype(data) == eth::TYPE_IPV4 {
            self.fib4.lookup(ipv4::dst(&data[eth::LEN..]))
        } else {
            self.fib6.lookup(ipv6::dst(&data[eth::LEN..]))
        };
        let Some(next_hop) = next_hop else {
            return self.drop(frame, DropReason::NoRoute);
        };
        match self.hop(next_hop, &frame) {
            Hop::Send { port, mac } => self.emit(frame, port, Ok(mac)),
            Hop::Resolve { port, ip } => self.emit(frame, port, Err(ip)),
            Hop::Tunnel { tunnel, via } => self.encapsulate(frame, tunnel, via),
            // A reply to ourselves or to a broadcast address: nothing to send.
            _ => self.drop(frame, DropReason::LocalUnhandled),
        }
    }

    pub(super) fn learn(&mut self, port: u16, learned: local::Learned) {
        if let Some((ip, mac)) = learned {
            // Best effort: a full channel only delays learning until the next packet.
            let _ = self.control.try_send(ControlMsg::Learned { port, ip, mac });
        }
    }
}
