//! Stage 1: validate every frame of the burst and classify it; a tunnel packet of ours is
//! decapsulated here (tunnel.rs). Each malformation has its own drop reason. Ethernet
//! padding is trimmed so it is never forwarded.

use super::{Class, Meta, PortInfo};
use crate::buf::Frame;
use crate::counters::DropReason;
use crate::wire::{eth, ipv4, ipv6, BROADCAST};

/// A stage that takes each frame from parse's hands while its headers are still in L1:
/// the tunnel endpoint (`tunnel::Endpoint`), which swaps a tunnel packet of ours for its
/// inner packet and its class. Parse knows only this, not the tunnels.
pub trait Receiver {
    fn receive(&mut self, frame: &mut Frame, class: &mut Class, port: &PortInfo);
}

/// Classifies every frame of the burst; with an `endpoint`, each classified frame is
/// offered to it on the spot. On a port that completes partial checksums
/// (`wire::partial`), returns how many it completed.
pub fn burst<R: Receiver>(
    frames: &mut [Frame],
    meta: &mut [Meta],
    port: &PortInfo,
    mut endpoint: Option<&mut R>,
) -> u64 {
    let mut completed = 0;
    // Two instances of the loop, so a port without partial checksums pays nothing.
    if port.completes_partial_checksums {
        for (frame, m) in frames.iter_mut().zip(meta.iter_mut()) {
            let endpoint = endpoint.as_deref_mut();
            classify_into::<true, R>(frame, port, endpoint, &mut m.class, &mut completed);
            m.next_hop = lpm::NO_ROUTE;
        }
    } else {
        for (frame, m) in frames.iter_mut().zip(meta.iter_mut()) {
            let endpoint = endpoint.as_deref_mut();
            classify_into::<false, R>(frame, port, endpoint, &mut m.class, &mut completed);
            m.next_hop = lpm::NO_ROUTE;
        }
    }
    completed
}

/// [`classify`] (then the endpoint), writing the class straight into the frame's
/// metadata. Returned by value, the 32-byte `Class` went through a stack slot that
/// `classify` wrote with narrow stores and the caller at once re-read with 16-byte loads
/// to copy it: a failed store-to-load forward, a stall on every packet.
#[inline(always)]
fn classify_into<const PARTIAL: bool, R: Receiver>(
    frame: &mut Frame,
    port: &PortInfo,
    endpoint: Option<&mut R>,
    class: &mut Class,
    completed: &mut u64,
) {
    *class = classify_received::<PARTIAL>(frame, port, completed);
    if let Some(endpoint) = endpoint {
        endpoint.receive(frame, class, port);
    }
}

/// Validates and classifies a frame (see [`burst`]).
#[inline(always)]
pub fn classify(frame: &mut Frame, port: &PortInfo) -> Class {
    classify_received::<false>(frame, port, &mut 0)
}

/// [`classify`]; with `PARTIAL`, also finishes the partial TCP/UDP checksum of an IP
/// packet (counted in `completed`). Before decapsulation and NAT: both rewrite checksums
/// incrementally, which would keep a partial sum partial, and wrong, for good.
#[inline(always)]
fn classify_received<const PARTIAL: bool>(
    frame: &mut Frame,
    port: &PortInfo,
    completed: &mut u64,
) -> Class {
    let f = frame.data();
    if f.len() < eth::LEN {
        return Class::Drop(DropReason::Runt);
    }
    let dst_mac = &f[0..6];
    let multicast = dst_mac[0] & 1 != 0;
    if !multicast && dst_mac != port.mac {
        return Class::Drop(DropReason::NotForUs);
    }
    match eth::ethertype(f) {
        eth::TYPE_IPV4 => {
            if multicast && dst_mac != BROADCAST {
                return Class::Drop(DropReason::Ipv4NotForwardable);
            }
            let class = ipv4_received::<PARTIAL>(frame, completed);
            if multicast && !matches!(class, Class::Drop(_)) {
                // Link broadcast: nothing we answer (no DHCP, no RIP) and never forwarded.
                return Class::Drop(DropReason::Ipv4NotForwardable);
            }
            class
        }
        eth::TYPE_IPV6 => {
            let class = ipv6_packet(frame, port);
            if PARTIAL && matches!(class, Class::V6 { .. } | Class::V6Multicast) {
                // The candidate test inline, the full sum out of line (in `wire::partial`).
                let ip = &mut frame.data_mut()[eth::LEN..];
                *completed += crate::wire::partial::complete_v6(ip) as u64;
            }
            class
        }
        eth::TYPE_ARP => Class::Arp,
        _ => Class::Drop(DropReason::UnsupportedEthertype),
    }
}

/// Finishes a partial checksum in the IPv4 packet of `frame` (`wire::partial`); whether
/// it wrote one. Out of line: only candidates of `ipv4_header`'s test come here.
#[inline(never)]
fn complete_partial_v4(frame: &mut Frame) -> bool {
    crate::wire::partial::complete_v4(&mut frame.data_mut()[eth::LEN..])
}

/// [`ipv4_packet`] for a frame received on a port, with the partial-checksum test of
/// [`classify_received`].
#[inline(always)]
fn ipv4_received<const PARTIAL: bool>(frame: &mut Frame, completed: &mut u64) -> Class {
    match ipv4_header::<PARTIAL>(&frame.data()[eth::LEN..]) {
        Ok((dst, total, candidate)) => {
            frame.set_len(eth::LEN + total);
            if PARTIAL && candidate {
                *completed += complete_partial_v4(frame) as u64;
            }
            Class::V4 { dst }
        }
        Err(reason) => Class::Drop(reason),
    }
}

/// Validates the IPv4 packet behind the frame's Ethernet header and trims the frame to
/// it. Also what a decapsulated inner packet goes through (tunnel.rs).
#[inline(always)]
pub fn ipv4_packet(frame: &mut Frame) -> Class {
    ipv4_received::<false>(frame, &mut 0)
}

/// [`ipv4_packet`] for IPv6.
#[inline(always)]
pub fn ipv6_packet(frame: &mut Frame, port: &PortInfo) -> Class {
    match ipv6_header(&frame.data()[eth::LEN..], port) {
        Ok((class, total)) => {
            frame.set_len(eth::LEN + total);
            class
        }
        Err(reason) => Class::Drop(reason),
    }
}

/// Checks an IPv4 header; returns the destination, the total length and, with
/// `PARTIAL`, whether the packet may carry a partial checksum (`wire::partial`).
#[inline(always)]
fn ipv4_header<const PARTIAL: bool>(h: &[u8]) -> Result<(u32, usize, bool), DropReason> {
    // The fixed part as an array: its fields are read without bounds checks.
    let Some(fixed) = h.first_chunk::<{ ipv4::MIN_LEN }>() else {
        return Err(DropReason::Ipv4Truncated);
    };
    let total = ipv4::total_len(fixed);
    if fixed[0] == 0x45 {
        // Version 4 without options, nearly every packet: one compare for both fields,
        // and the header is the 20 bytes `fixed` holds.
        if total < ipv4::MIN_LEN || total > h.len() {
            return Err(DropReason::Ipv4BadTotalLength);
        }
        if !crate::wire::ipv4_20_verifies(fixed) {
            return Err(DropReason::Ipv4BadChecksum);
        }
    } else {
        header_with_options(h, total)?;
    }
    // With options the full test runs out of line: such packets are rare.
    let candidate =
        PARTIAL && (fixed[0] != 0x45 || crate::wire::partial::candidate_v4_20(fixed, &h[..total]));
    let dst = ipv4::dst_bits(fixed);
    // One branch for both addresses, taken only by a packet that is dropped; which
    // address and why is worked out then.
    if martian_first_octet(fixed[12]) | martian_first_octet(fixed[16]) {
        return Err(address_refusal(ipv4::src_bits(fixed), dst));
    }
    Ok((dst, total, candidate))
}

/// The checks of `ipv4_header` on a header that is not 0x45 at its first byte: another
/// version, a bad length, or options (summed in full).
#[inline(never)]
fn header_with_options(h: &[u8], total: usize) -> Result<(), DropReason> {
    if ipv4::version(h) != 4 {
        return Err(DropReason::Ipv4BadVersion);
    }
    let ihl = ipv4::header_len(h);
    if ihl < ipv4::MIN_LEN || ihl > h.len() {
        return Err(DropReason::Ipv4BadIhl);
    }
    if total < ihl || total > h.len() {
        return Err(DropReason::Ipv4BadTotalLength);
    }
    if crate::wire::checksum(&h[..ihl]) != 0 {
        return Err(DropReason::Ipv4BadChecksum);
    }
    Ok(())
}

/// Whether an IPv4 address with this first octet is neither source nor destination of a
/// packet tern forwards or answers (RFC 1812 §5.3.7, RFC 6890): 0/8 "this network"
/// (0.0.0.0 included), 127/8 loopback, 224/4 multicast, 240/4 reserved (255.255.255.255
/// included). The same set on both sides; without branches, so `ipv4_header` tests both
/// addresses at once.
#[inline(always)]
fn martian_first_octet(first_octet: u8) -> bool {
    (first_octet == 0) | (first_octet == 127) | (first_octet >= 224)
}

/// Why `ipv4_header` refuses addresses: the source first, then the destination.
#[cold]
fn address_refusal(src: u32, dst: u32) -> DropReason {
    if martian_first_octet((src >> 24) as u8) {
        DropReason::Ipv4BadSource
    } else {
        debug_assert!(martian_first_octet((dst >> 24) as u8));
        DropReason::Ipv4NotForwardable
    }
}

/// Checks an IPv6 header; returns the class and the total length.
fn ipv6_header(h: &[u8], port: &PortInfo) -> Result<(Class, usize), DropReason> {
    if h.len() < ipv6::LEN {
        return Err(DropReason::Ipv6Truncated);
    }
    if ipv6::version(h) != 6 {
        return Err(DropReason::Ipv6BadVersion);
    }
    let total = ipv6::LEN + ipv6::payload_len(h);
    if total > h.len() {
        return Err(DropReason::Ipv6BadPayloadLength);
    }
    let src = ipv6::src(h);
    let dst = ipv6::dst(h);
    // RFC 4291 §2.5.2-§2.7, RFC 6890: multicast, loopback and IPv4-mapped sources never;
    // the unspecified source only to a multicast group (duplicate address detection).
    if src.is_multicast()
        || src.is_loopback()
        || src.to_ipv4_mapped().is_some()
        || (src.is_unspecified() && !dst.is_multicast())
    {
        return Err(DropReason::Ipv6BadSource);
    }
    if dst.is_multicast() {
        let ours = dst == std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)
            || dst == ipv6::solicited_node(port.link_local)
            || port
                .v6
                .iter()
                .any(|n| dst == ipv6::solicited_node(n.addr()));
        return if ours {
            Ok((Class::V6Multicast, total))
        } else {
            Err(DropReason::Ipv6NotForwardable)
        };
    }
    if dst.is_loopback() || dst.is_unspecified() || dst.to_ipv4_mapped().is_some() {
        return Err(DropReason::Ipv6NotForwardable);
    }
    if dst.is_unicast_link_local() {
        return if dst == port.link_local {
            Ok((Class::V6Multicast, total))
        } else {
            Err(DropReason::Ipv6NotForwardable)
        };
    }
    Ok((Class::V6 { dst: dst.to_bits() }, total))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::buf::Pool;

    const MAC: crate::wire::Mac = [2, 0, 0, 0, 0, 1];

    /// The class of a frame holding `bytes`, received on `port`.
    fn classify_bytes(bytes: &[u8], port: &PortInfo) -> Class {
        let mut pool = Pool::new(1);
        let mut frame = pool.alloc().expect("a frame");
        assert!(frame.fill(bytes));
        let class = classify(&mut frame, port);
        pool.free(frame);
        class
    }

    fn classify_v4(src: Ipv4Addr, dst: Ipv4Addr) -> Class {
        let port = PortInfo::bare(MAC);
        let mut bytes = [0u8; eth::LEN + 28];
        eth::write(&mut bytes, &MAC, &[2, 0, 0, 0, 0, 2], eth::TYPE_IPV4);
        ipv4::Header {
            total_len: 28,
            ..ipv4::Header::new(17, src, dst)
        }
        .emit(&mut bytes[eth::LEN..]);
        classify_bytes(&bytes, &port)
    }

    /// Each address class on each side, against `Ipv4Addr`'s own predicates: the source is
    /// judged first, each refusal with its reason.
    #[test]
    fn ipv4_address_classes_are_refused_with_their_reason() {
        let samples = [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "126.255.255.255",
            "127.0.0.1",
            "127.255.255.254",
            "128.0.0.0",
            "192.0.2.1",
            "198.18.0.1",
            "223.255.255.255",
            "224.0.0.1",
            "232.1.2.3",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.254",
            "255.255.255.255",
        ];
        // RFC 6890's "this network", loopback, multicast and reserved blocks.
        let odd = |a: Ipv4Addr| {
            a.octets()[0] == 0
                || a.is_loopback()
                || a.is_multicast()
                || a.octets()[0] >= 240
                || a.is_broadcast()
        };
        for src in samples.map(|s| s.parse::<Ipv4Addr>().expect("address")) {
            for dst in samples.map(|s| s.parse::<Ipv4Addr>().expect("address")) {
                let expected = if odd(src) {
                    Class::Drop(DropReason::Ipv4BadSource)
                } else if odd(dst) {
                    Class::Drop(DropReason::Ipv4NotForwardable)
                } else {
                    Class::V4 { dst: dst.to_bits() }
                };
                assert_eq!(classify_v4(src, dst), expected, "{src} -> {dst}");
            }
        }
    }

    fn classify_v6(src: &str, dst: &str) -> Class {
        let port = PortInfo::bare(MAC);
        let mut bytes = [0u8; eth::LEN + ipv6::LEN + 8];
        eth::write(&mut bytes, &MAC, &[2, 0, 0, 0, 0, 2], eth::TYPE_IPV6);
        let (src, dst) = (src.parse().expect("src"), dst.parse().expect("dst"));
        ipv6::write(&mut bytes[eth::LEN..], 8, 17, 64, src, dst);
        classify_bytes(&bytes, &port)
    }

    /// RFC 4291 / RFC 6890 on IPv6: the unspecified source only towards a multicast group
    /// (duplicate address detection), IPv4-mapped addresses on neither side.
    #[test]
    fn ipv6_martians_are_refused_with_their_reason() {
        let bad_source = Class::Drop(DropReason::Ipv6BadSource);
        let not_forwardable = Class::Drop(DropReason::Ipv6NotForwardable);
        assert_eq!(classify_v6("::", "2001:db8::1"), bad_source);
        assert_eq!(classify_v6("::1", "2001:db8::1"), bad_source);
        assert_eq!(classify_v6("ff02::1", "2001:db8::1"), bad_source);
        assert_eq!(classify_v6("::ffff:192.0.2.1", "2001:db8::1"), bad_source);
        assert_eq!(
            classify_v6("2001:db8::2", "::ffff:192.0.2.1"),
            not_forwardable
        );
        assert_eq!(classify_v6("2001:db8::2", "::"), not_forwardable);
        assert_eq!(classify_v6("::", "ff02::1"), Class::V6Multicast);
        let dst: std::net::Ipv6Addr = "2001:db8::1".parse().expect("dst");
        assert_eq!(
            classify_v6("2001:db8::2", "2001:db8::1"),
            Class::V6 { dst: dst.to_bits() }
        );
    }
}
