//! Tunnel stages: decapsulation inside the parse stage (so the inner packet then goes
//! through the FIB, TTL and MTU stages like any other), and encapsulation into the
//! headroom once the FIB picked a tunnel adjacency. The checks themselves live in the
//! `tunnels` crate; this module moves the frame's Ethernet header around them.

use tunnels::{DecapError, TunnelTable};

use super::{parse, Class, PortInfo};
use crate::buf::Frame;
use crate::counters::{Drop, Event, Local};
use crate::wire::{eth, ipv4, ipv6};

/// The tunnel endpoint as the parse stage meets it: every frame parse classified as IP
/// is offered to [`Endpoint::receive`] while its header is still in L1, and a tunnel
/// packet of ours leaves the stage as its inner packet, classified like any other.
pub struct Endpoint<'a> {
    pub table: &'a TunnelTable,
    pub stats: &'a mut Local,
    /// Counter slot (and ingress number) of tunnel 0: ports come first.
    pub first_tunnel: usize,
}

impl Endpoint<'_> {
    /// The class `frame` (classified `class` by parse) goes on with: the same, if it is
    /// not a tunnel packet of ours; else its inner packet's, or the drop reason.
    #[inline(always)]
    pub fn receive(&mut self, frame: &mut Frame, class: Class, port: &PortInfo) -> Class {
        let outcome = match class {
            Class::V4 { dst } => {
                tunnels::decap::receive_v4(self.table, &mut frame.data_mut()[eth::LEN..], dst)
            }
            Class::V6 { dst } => {
                tunnels::decap::receive_v6(self.table, &mut frame.data_mut()[eth::LEN..], dst)
            }
            _ => None,
        };
        match outcome {
            None => class,
            Some(Ok(d)) => {
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
            Some(Err(reason)) => Class::Drop(drop_reason(reason)),
        }
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
    let f = frame.data_mut();
    f[..12].copy_from_slice(&macs);
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
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
