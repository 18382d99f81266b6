//! Tunnel stages: decapsulation inside the parse stage (so the inner packet then goes
//! through the FIB, TTL and MTU stages like any other), and encapsulation into the
//! headroom once the FIB picked a tunnel adjacency. The checks themselves live in the
//! `tunnels` crate; this module moves the frame's Ethernet header around them.

use tunnels::{DecapError, LastShape, TunnelTable};

use super::{parse, Class, PortInfo};
use crate::buf::Frame;
use crate::counters::{Drop, Event, Local};
use crate::wire::{eth, ipv4, ipv6};

/// The tunnel endpoint as the parse stage meets it: every frame parse classified as IP
/// is offered to [`Endpoint::receive`] while its header is still in L1, and a tunnel
/// packet of ours leaves the stage as its inner packet, classified like any other.
pub struct Endpoint<'a> {
    table: &'a TunnelTable,
    stats: &'a mut Local,
    /// Counter slot (and ingress number) of tunnel 0: ports come first.
    first_tunnel: usize,
    last: LastShape,
}

impl<'a> Endpoint<'a> {
    /// The endpoint for one burst: a burst's tunnel packets mostly share a tunnel, so the
    /// shape memo lives as long as the burst.
    pub fn new(table: &'a TunnelTable, stats: &'a mut Local, first_tunnel: usize) -> Self {
        Endpoint {
            table,
            stats,
            first_tunnel,
            last: LastShape::default(),
        }
    }

    /// Replaces `class` (what parse made of `frame`) with the inner packet's class, or the
    /// drop reason, when `frame` is a tunnel packet of ours; leaves it alone otherwise.
    /// In place: a pass-through packet (most of them) then costs no copy of the class.
    #[inline(always)]
    pub fn receive(&mut self, frame: &mut Frame, class: &mut Class, port: &PortInfo) {
        match *class {
            Class::V4 { dst } => self.receive_v4(frame, dst, class, port),
            Class::V6 { dst } => {
                let ip = &frame.data()[eth::LEN..];
                if ip.get(6) == Some(&tunnels::PROTO_GRE) && self.table.is_local(dst) {
                    *class = self.unshaped(frame, port);
                }
            }
            _ => {}
        }
    }

    /// An IPv4 packet: the tunnel protocols, then a tunnel's exact shape (the common case,
    /// without the local-address test), then the general path for the rest to our
    /// tunnel endpoints.
    #[inline(always)]
    fn receive_v4(&mut self, frame: &mut Frame, dst: u32, class: &mut Class, port: &PortInfo) {
        let ip = &mut frame.data_mut()[eth::LEN..];
        if !ip
            .get(9)
            .is_some_and(|&p| tunnels::decap::is_tunnel_protocol(p))
        {
            return;
        }
        if let Some(shaped) = tunnels::decap::shaped_v4(self.table, ip, &mut self.last) {
            let outer_tos = ip[1]; // in bounds: the shape is 28 bytes long
            let outcome = tunnels::decap::inner_packet(ip, shaped, outer_tos);
            *class = self.decapsulated(frame, outcome, port);
        } else if self.table.is_local(dst as u128) {
            *class = self.unshaped(frame, port);
        }
    }

    /// A packet to a tunnel endpoint of ours that is not of a tunnel's exact shape: GRE
    /// with checksum or sequence numbers, outer options or IPv6, and every refusal.
    #[inline(never)]
    fn unshaped(&mut self, frame: &mut Frame, port: &PortInfo) -> Class {
        let outcome = tunnels::decap::decap_general(self.table, &mut frame.data_mut()[eth::LEN..]);
        self.decapsulated(frame, outcome, port)
    }

    /// The inner packet of a decapsulated frame, counted on its tunnel and classified;
    /// or the drop reason.
    #[inline(always)]
    fn decapsulated(
        &mut self,
        frame: &mut Frame,
        outcome: Result<tunnels::Decap, DecapError>,
        port: &PortInfo,
    ) -> Class {
        let d = match outcome {
            Ok(d) => d,
            Err(reason) => return Class::Drop(drop_reason(reason)),
        };
        let class = strip_outer(frame, d, port);
        let slot = self.first_tunnel + d.tunnel as usize;
        frame.ingress = slot as u16;
        self.stats.event(Event::TunnelDecapsulated);
        if let Some(c) = self.stats.ports.get_mut(slot) {
            c.rx_packets += 1;
            c.rx_bytes += (frame.len() - eth::LEN) as u64;
        }
        class
    }
}

/// Moves the frame's start to the inner packet of `d`, writes the Ethernet header in front
/// of it, and classifies it.
#[inline(always)]
fn strip_outer(frame: &mut Frame, d: tunnels::Decap, port: &PortInfo) -> Class {
    let Some(&macs) = frame.data().first_chunk::<12>() else {
        return Class::Drop(Drop::Runt);
    };
    // The inner packet takes the place of the outer headers; the Ethernet header is
    // rewritten just in front of it (the bytes of the outer header it overwrites are spent).
    frame.advance(d.inner);
    let ethertype = if d.inner_v6 {
        eth::TYPE_IPV6
    } else {
        eth::TYPE_IPV4
    };
    let Some(header) = frame.data_mut().first_chunk_mut::<{ eth::LEN }>() else {
        return Class::Drop(Drop::Runt);
    };
    header[..12].copy_from_slice(&macs);
    header[12..].copy_from_slice(&ethertype.to_be_bytes());
    // The inner packet is checked as the parse stage checks any IP packet; its Ethernet
    // header is ours and needs no check.
    if d.inner_v6 {
        parse::ipv6_packet(frame, port)
    } else {
        parse::ipv4_packet(frame)
    }
}

/// The drop counter for each decapsulation refusal.
pub fn drop_reason(e: DecapError) -> Drop {
    match e {
        DecapError::Truncated => Drop::TunnelTruncated,
        DecapError::OuterFragment => Drop::TunnelOuterFragment,
        DecapError::UnknownRemote => Drop::TunnelUnknownRemote,
        DecapError::KeyMismatch => Drop::TunnelKeyMismatch,
        DecapError::ChecksumMismatch => Drop::GreChecksumMismatch,
        DecapError::BadChecksum => Drop::GreBadChecksum,
        DecapError::BadSequence => Drop::GreBadSequence,
        DecapError::BadVersion => Drop::GreBadVersion,
        DecapError::BadFlags => Drop::GreBadFlags,
        DecapError::BadPayload => Drop::TunnelBadPayload,
        DecapError::EcnDrop => Drop::TunnelEcnDrop,
    }
}

/// Encapsulates the IP packet of `frame` (TTL and MTU already handled) in place: the outer
/// headers go into the headroom, over the old Ethernet header, and a new Ethernet header
/// with the outer ethertype goes in front. Where the outer packet goes is the tunnel
/// adjacency's business (it carries the remote's next hop).
#[inline(always)]
pub fn encap(frame: &mut Frame, tunnel: &tunnels::Tunnel) -> Result<(), Drop> {
    let overhead = tunnel.template().overhead();
    if !frame.prepend(overhead) {
        return Err(Drop::NoBuffer);
    }
    if !tunnels::encap(tunnel, &mut frame.data_mut()[eth::LEN..]) {
        frame.advance(overhead);
        return Err(Drop::TunnelBadPayload);
    }
    let ethertype = if tunnel.spec.kind.outer_v6() {
        eth::TYPE_IPV6
    } else {
        eth::TYPE_IPV4
    };
    frame.data_mut()[12..14].copy_from_slice(&ethertype.to_be_bytes());
    Ok(())
}

/// The ICMP error fields tern relays to an inner source (RFC 2003 §4).
pub fn relay_fields(relay: tunnels::icmp::Relay, inner_v6: bool) -> (u8, u8, [u8; 4]) {
    use crate::wire::{icmp4, icmp6};
    use tunnels::icmp::Relay;
    match (relay, inner_v6) {
        (Relay::TooBig { mtu }, false) => {
            let [hi, lo] = mtu.to_be_bytes();
            (
                icmp4::DEST_UNREACHABLE,
                icmp4::CODE_FRAG_NEEDED,
                [0, 0, hi, lo],
            )
        }
        (Relay::TooBig { mtu }, true) => (icmp6::PACKET_TOO_BIG, 0, (mtu as u32).to_be_bytes()),
        (Relay::Unreachable, false) => (
            icmp4::DEST_UNREACHABLE,
            icmp4::CODE_HOST_UNREACHABLE,
            [0; 4],
        ),
        (Relay::Unreachable, true) => (
            icmp6::DEST_UNREACHABLE,
            icmp6::CODE_ADDR_UNREACHABLE,
            [0; 4],
        ),
    }
}

/// If `ip` (a packet to one of our addresses) is an ICMP error about an outer tunnel
/// packet of ours, returns the quoted outer packet and the too-big MTU it carries.
pub fn quoted_outer(ip: &[u8]) -> Option<(&[u8], Option<u32>)> {
    use crate::wire::{icmp4, icmp6};
    match ip.first()? >> 4 {
        4 => {
            if ipv4::proto(ip) != ipv4::PROTO_ICMP || ipv4::is_later_fragment(ip) {
                return None;
            }
            let msg = ip.get(ipv4::header_len(ip)..ipv4::total_len(ip))?;
            if msg.len() < 8 + 20 || crate::wire::checksum(msg) != 0 {
                return None;
            }
            let too_big = match (msg[0], msg[1]) {
                (icmp4::DEST_UNREACHABLE, icmp4::CODE_FRAG_NEEDED) => {
                    Some(u16::from_be_bytes([msg[6], msg[7]]) as u32)
                }
                (icmp4::DEST_UNREACHABLE | icmp4::TIME_EXCEEDED | icmp4::PARAMETER_PROBLEM, _) => {
                    None
                }
                _ => return None,
            };
            Some((&msg[8..], too_big))
        }
        6 => {
            if ipv6::next_header(ip) != ipv6::NEXT_ICMP {
                return None;
            }
            let msg = ip.get(ipv6::LEN..ipv6::LEN + ipv6::payload_len(ip))?;
            if msg.len() < 8 + 40
                || crate::wire::checksum6(ipv6::src(ip), ipv6::dst(ip), ipv6::NEXT_ICMP, msg) != 0
            {
                return None;
            }
            let too_big = match msg[0] {
                icmp6::PACKET_TOO_BIG => Some(u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]])),
                icmp6::DEST_UNREACHABLE | icmp6::TIME_EXCEEDED => None,
                _ => return None,
            };
            Some((&msg[8..], too_big))
        }
        _ => None,
    }
}
