//! Tunnel stages: decapsulation inside the parse stage (so the inner packet then goes
//! through the FIB, TTL and MTU stages like any other), and encapsulation into the
//! headroom once the FIB picked a tunnel adjacency. The checks themselves live in the
//! `tunnels` crate; this module moves the frame's Ethernet header around them.

use tunnels::{DecapError, LastShape, TunnelTable};

use super::{parse, Class, PortInfo};
use crate::buf::Frame;
use crate::counters::{DropReason, Event, Local};
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

impl parse::Receiver for Endpoint<'_> {
    /// Replaces `class` (what parse made of `frame`) with the inner packet's class, or the
    /// drop reason, when `frame` is a tunnel packet of ours; leaves it alone otherwise.
    /// In place: a pass-through packet (most of them) then costs no copy of the class.
    #[inline(always)]
    fn receive(&mut self, frame: &mut Frame, class: &mut Class, port: &PortInfo) {
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

    /// An IPv4 packet: the tunnel protocols, then a tunnel's exact shape (the common case,
    /// without the local-address test), then the general path for the rest to our
    /// tunnel endpoints.
    #[inline(always)]
    fn receive_v4(&mut self, frame: &mut Frame, dst: u32, class: &mut Class, port: &PortInfo) {
        let ip = &frame.data()[eth::LEN..];
        if !ip
            .get(9)
            .is_some_and(|&p| tunnels::decap::is_tunnel_protocol(p))
        {
            return;
        }
        if let Some(shaped) = tunnels::decap::shaped_v4(self.table, ip, &mut self.last) {
            let outer_tos = ip[1]; // in bounds: the shape is 28 bytes long
            *class = self.inner(frame, shaped, outer_tos, port);
        } else if self.table.is_local(dst as u128) {
            *class = self.unshaped(frame, port);
        }
    }

    /// A packet to a tunnel endpoint of ours that is not of a tunnel's exact shape: GRE
    /// with checksum or sequence numbers, outer options or IPv6, and every refusal.
    #[inline(never)]
    fn unshaped(&mut self, frame: &mut Frame, port: &PortInfo) -> Class {
        match tunnels::decap::outer_headers(self.table, &frame.data()[eth::LEN..]) {
            Ok((d, outer_ecn)) => self.inner(frame, d, outer_ecn, port),
            Err(reason) => Class::Drop(drop_reason(reason)),
        }
    }

    /// The inner packet of `d`, whose outer headers passed. It is checked once, by the
    /// parse stage's checks (which also find a payload too short or of the wrong family:
    /// the tunnel's reasons are given for those), then RFC 6040 is applied, and it is
    /// counted on its tunnel.
    #[inline(always)]
    fn inner(
        &mut self,
        frame: &mut Frame,
        d: tunnels::Decap,
        outer_ecn: u8,
        port: &PortInfo,
    ) -> Class {
        let class = strip_outer(frame, d, port);
        if let Class::Drop(reason) = class {
            return Class::Drop(payload_refusal(reason));
        }
        let inner = &mut frame.data_mut()[eth::LEN..];
        if let Err(reason) = tunnels::decap::apply_ecn(outer_ecn, inner, d.inner_v6) {
            return Class::Drop(drop_reason(reason));
        }
        self.count(frame, d);
        class
    }

    /// Counts a decapsulated packet on its tunnel, which becomes its ingress interface.
    #[inline(always)]
    fn count(&mut self, frame: &mut Frame, d: tunnels::Decap) {
        let slot = self.first_tunnel + d.tunnel as usize;
        frame.ingress = slot as u16;
        self.stats.event(Event::TunnelDecapsulated);
        if let Some(c) = self.stats.ports.get_mut(slot) {
            c.rx_packets += 1;
            c.rx_bytes += (frame.len() - eth::LEN) as u64;
        }
    }
}

/// Moves the frame's start to the inner packet of `d`, writes the Ethernet header in front
/// of it, and classifies it.
#[inline(always)]
fn strip_outer(frame: &mut Frame, d: tunnels::Decap, port: &PortInfo) -> Class {
    let Some(&macs) = frame.data().first_chunk::<12>() else {
        return Class::Drop(DropReason::Runt);
    };
    // The inner packet takes the place of the outer headers; the Ethernet header is
    // rewritten just in front of it (the bytes of the outer header it overwrites are spent).
    if !frame.advance(d.inner) {
        return Class::Drop(DropReason::TunnelTruncated);
    }
    let ethertype = if d.inner_v6 {
        eth::TYPE_IPV6
    } else {
        eth::TYPE_IPV4
    };
    let Some(header) = frame.data_mut().first_chunk_mut::<{ eth::LEN }>() else {
        // The inner packet would start past the end of the outer one.
        return Class::Drop(DropReason::TunnelTruncated);
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

/// The reason for an inner packet the parse checks refused: a payload too short for its
/// header, or not of the family the outer headers say, is the tunnel's refusal (as
/// `tunnels::decap_general` gives them); the rest are the inner header's own.
#[cold]
fn payload_refusal(reason: DropReason) -> DropReason {
    match reason {
        DropReason::Ipv4Truncated | DropReason::Ipv6Truncated => DropReason::TunnelTruncated,
        DropReason::Ipv4BadVersion | DropReason::Ipv6BadVersion => DropReason::TunnelBadPayload,
        other => other,
    }
}

/// The drop counter for each decapsulation refusal.
pub fn drop_reason(e: DecapError) -> DropReason {
    match e {
        DecapError::Truncated => DropReason::TunnelTruncated,
        DecapError::OuterFragment => DropReason::TunnelOuterFragment,
        DecapError::UnknownRemote => DropReason::TunnelUnknownRemote,
        DecapError::KeyMismatch => DropReason::TunnelKeyMismatch,
        DecapError::ChecksumMismatch => DropReason::GreChecksumMismatch,
        DecapError::BadChecksum => DropReason::GreBadChecksum,
        DecapError::BadSequence => DropReason::GreBadSequence,
        DecapError::BadVersion => DropReason::GreBadVersion,
        DecapError::BadFlags => DropReason::GreBadFlags,
        DecapError::BadPayload => DropReason::TunnelBadPayload,
        DecapError::EcnDrop => DropReason::TunnelEcnDrop,
    }
}

/// Encapsulates the IP packet of `frame` (TTL and MTU already handled) in place: the outer
/// headers go into the headroom, over the old Ethernet header, and a new Ethernet header
/// with the outer ethertype goes in front. Where the outer packet goes is the tunnel
/// adjacency's business (it carries the remote's next hop).
#[inline(always)]
pub fn encap(frame: &mut Frame, tunnel: &tunnels::Tunnel) -> Result<(), DropReason> {
    let overhead = tunnel.template().overhead();
    if !frame.prepend(overhead) {
        return Err(DropReason::NoBuffer);
    }
    if !tunnels::encap(tunnel, &mut frame.data_mut()[eth::LEN..]) {
        frame.advance(overhead);
        return Err(DropReason::TunnelBadPayload);
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

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use tunnels::{Dscp, Kind, Spec, Ttl, TunnelTable};

    use super::*;
    use crate::buf::Pool;
    use crate::counters::Local;
    use crate::pipeline::parse::Receiver;

    const MAC: crate::wire::Mac = [2, 0, 0, 0, 0, 1];

    /// The receiving ends: every IPv4-outer kind between one pair of endpoints, GRE with
    /// and without a key, none with checksum or sequence numbers, so each has a shape.
    fn specs() -> Vec<Spec> {
        let spec = |name: &str, kind: Kind, key: Option<u32>| Spec {
            name: name.into(),
            kind,
            local: IpAddr::from([198, 18, 0, 1]),
            remote: IpAddr::from([198, 18, 0, 2]),
            key,
            sequence: false,
            checksum: false,
            ttl: Ttl::Fixed(64),
            dscp: Dscp::Inherit,
            mtu: 1400,
        };
        vec![
            spec("ipip", Kind::Ipip, None),
            spec("sit", Kind::SixInFour, None),
            spec("gre", Kind::Gre, None),
            spec("gre-k", Kind::Gre, Some(7)),
        ]
    }

    /// An outer packet of tunnel `s` (as its remote sends it) with `inner` in it.
    fn encapsulated(s: &Spec, inner: &[u8]) -> Vec<u8> {
        let mut tx = s.clone();
        (tx.local, tx.remote) = (s.remote, s.local);
        let table = TunnelTable::new(vec![tx]).expect("sender");
        let mut p = vec![0u8; s.overhead()];
        p.extend_from_slice(inner);
        assert!(tunnels::encap(table.get(0).expect("tunnel"), &mut p));
        p
    }

    fn inner_packet(v6: bool, ecn: u8, payload: usize) -> Vec<u8> {
        if v6 {
            let mut p = vec![0u8; 40 + payload];
            ipv6::write(
                &mut p,
                payload as u16,
                17,
                63,
                "2001:db8:a::2".parse().expect("addr"),
                "2001:db8:b::2".parse().expect("addr"),
            );
            p[1] = ecn << 4;
            p
        } else {
            let mut p = vec![0u8; 20 + payload];
            ipv4::Header {
                tos: ecn,
                total_len: (20 + payload) as u16,
                ident: 0x1234,
                ttl: 63,
                ..ipv4::Header::new(17, [192, 0, 2, 2].into(), [203, 0, 113, 2].into())
            }
            .emit(&mut p);
            p
        }
    }

    /// What the parse stage and the endpoint make of `ip` arriving in a frame, through the
    /// shaped path where it applies (`receive`) or only the general one (`unshaped`):
    /// the class, the frame's bytes and ingress after, and the counters.
    fn outcome(
        table: &TunnelTable,
        ip: &[u8],
        general: bool,
    ) -> Option<(Class, Vec<u8>, u16, Local)> {
        let mut bytes = vec![0u8; eth::LEN];
        eth::write(&mut bytes, &MAC, &[2, 0, 0, 0, 0, 2], eth::TYPE_IPV4);
        bytes.extend_from_slice(ip);
        let mut pool = Pool::new(1);
        let mut frame = pool.alloc()?;
        assert!(frame.fill(&bytes));
        let port = PortInfo::bare(MAC);
        let mut class = parse::classify(&mut frame, &port);
        let Class::V4 { dst } = class else {
            pool.free(frame);
            return None;
        };
        let mut stats = Local::new(1 + table.len());
        let mut endpoint = Endpoint::new(table, &mut stats, 1);
        if general {
            let ours = tunnels::decap::is_tunnel_protocol(ip[9]) && table.is_local(dst as u128);
            if ours {
                class = endpoint.unshaped(&mut frame, &port);
            }
        } else {
            endpoint.receive(&mut frame, &mut class, &port);
        }
        let seen = (class, frame.data().to_vec(), frame.ingress);
        pool.free(frame);
        Some((seen.0, seen.1, seen.2, stats))
    }

    /// The explicit cases: RFC 6040's rewrite and drop, a payload of the wrong family, an
    /// inner packet cut short, and a good one, each with its reason.
    #[test]
    fn inner_packets_are_checked_once_with_the_tunnels_reasons() {
        let table = TunnelTable::new(specs()).expect("table");
        let [ipip, sit, ..] = &specs()[..] else {
            unreachable!()
        };
        let class = |p: &[u8]| outcome(&table, p, false).map(|o| o.0);

        // Outer CE over inner ECT(0): the inner packet leaves marked CE, checksum intact.
        let mut p = encapsulated(ipip, &inner_packet(false, 0b10, 8));
        p[1] |= 0b11;
        ipv4::fill_checksum(&mut p);
        let (c, bytes, ingress, stats) = outcome(&table, &p, false).expect("v4");
        assert_eq!(c, Class::V4 { dst: 0xcb00_7102 });
        assert_eq!(bytes[eth::LEN + 1] & 0b11, 0b11);
        assert_eq!(crate::wire::checksum(&bytes[eth::LEN..eth::LEN + 20]), 0);
        assert_eq!((ingress, stats.ports[1].rx_packets), (1, 1));

        // Outer CE over a Not-ECT inner packet: RFC 6040's drop.
        let mut p = encapsulated(ipip, &inner_packet(false, 0, 8));
        p[1] |= 0b11;
        ipv4::fill_checksum(&mut p);
        assert_eq!(class(&p), Some(Class::Drop(DropReason::TunnelEcnDrop)));

        // IPIP carrying IPv6, 6in4 carrying IPv4: not the family the protocol says.
        let mut p = encapsulated(ipip, &inner_packet(false, 0, 28));
        p[20] = 0x60;
        assert_eq!(class(&p), Some(Class::Drop(DropReason::TunnelBadPayload)));
        let mut p = encapsulated(sit, &inner_packet(true, 0, 8));
        p[20] = 0x45;
        assert_eq!(class(&p), Some(Class::Drop(DropReason::TunnelBadPayload)));

        // An inner header cut short by the outer length.
        let mut p = encapsulated(ipip, &inner_packet(false, 0, 8));
        p.truncate(20 + 12);
        p[2..4].copy_from_slice(&32u16.to_be_bytes());
        ipv4::fill_checksum(&mut p);
        assert_eq!(class(&p), Some(Class::Drop(DropReason::TunnelTruncated)));
    }

    /// The shaped path (`receive`) and the general one (`unshaped`) give the same class,
    /// bytes, ingress and counters, on valid packets of every kind and on mutations of
    /// their headers, ECN fields and lengths.
    #[test]
    fn shaped_and_general_paths_agree() {
        let table = TunnelTable::new(specs()).expect("table");
        let specs = specs();
        let mut rng = crate::wire::XorShift64::new(0x2545_f491_4f6c_dd1d);
        let mut rand = move || rng.next_u64();
        let (mut shaped, mut seen) = (0, Vec::new());
        for round in 0..20_000 {
            let s = &specs[round % specs.len()];
            let v6 = !s.kind.carries(false) || (s.kind.carries(true) && rand() % 2 == 0);
            let inner = inner_packet(v6, (rand() % 4) as u8, (rand() % 24) as usize);
            let mut p = encapsulated(s, &inner);
            p[1] ^= (rand() % 4) as u8;
            for _ in 0..rand() % 3 {
                let i = (rand() as usize) % p.len().min(72);
                p[i] = rand() as u8;
            }
            if rand() % 6 == 0 {
                p.truncate(20 + (rand() as usize) % (p.len() - 19));
            }
            // Outer header kept valid (as parse wants it) over whatever the mutations did.
            p[0] = 0x45;
            let total = p.len() as u16;
            p[2..4].copy_from_slice(&total.to_be_bytes());
            ipv4::fill_checksum(&mut p);
            if tunnels::decap::shaped_v4(&table, &p, &mut LastShape::default()).is_some() {
                shaped += 1;
            }
            let a = outcome(&table, &p, false);
            let b = outcome(&table, &p, true);
            match (a, b) {
                (Some(a), Some(b)) => {
                    assert_eq!(
                        (a.0, &a.1, a.2),
                        (b.0, &b.1, b.2),
                        "round {round}: {p:02x?}"
                    );
                    assert_eq!((a.3.drops, a.3.events), (b.3.drops, b.3.events));
                    assert_eq!(a.3.ports, b.3.ports);
                    if !seen.contains(&a.0) {
                        seen.push(a.0);
                    }
                }
                (a, b) => assert_eq!(a.is_none(), b.is_none()),
            }
        }
        assert!(shaped > 5_000, "the shortcut was taken: {shaped}");
        for c in [
            DropReason::TunnelEcnDrop,
            DropReason::TunnelBadPayload,
            DropReason::TunnelTruncated,
            DropReason::TunnelKeyMismatch,
            DropReason::Ipv4BadChecksum,
        ] {
            assert!(seen.contains(&Class::Drop(c)), "{c:?} not met: {seen:?}");
        }
        assert!(seen.iter().any(|c| matches!(c, Class::V4 { .. })));
        assert!(seen.iter().any(|c| matches!(c, Class::V6 { .. })));
    }
}
