//! Header rewriting with incremental checksum updates (RFC 1624): the IPv4 header checksum
//! for the addresses, the TCP/UDP checksum for the pseudo-header and the ports, the ICMP
//! checksum for an echo identifier. A later fragment has no transport header; its part of
//! the transport checksum was fixed in the first fragment, which covers the whole datagram.

use wire::{checksum_adjust, checksum_delta32, get16, icmp, ipv4, put16, tcp, udp};

use crate::flow::{Flow, Fragment, Parsed, ICMP, L4, TCP, UDP};

/// Where the transport checksum lives, and whether a zero there means "none" (UDP).
fn l4_checksum(proto: u8, l4: &L4) -> Option<(usize, bool)> {
    match (proto, l4) {
        (TCP, _) => Some((tcp::CHECKSUM, false)),
        (UDP, _) => Some((udp::CHECKSUM, true)),
        (ICMP, L4::IcmpQuery { .. }) => Some((icmp::CHECKSUM, false)),
        _ => None,
    }
}

/// Rewrites the packet described by `p` so that its flow becomes `to` (same protocol):
/// addresses in the IPv4 header, ports or the echo identifier in the transport header,
/// and every checksum covering them.
pub fn rewrite(ip: &mut [u8], p: &Parsed, to: &Flow) {
    let from = p.flow;
    let addresses = checksum_delta32(from.src, to.src) + checksum_delta32(from.dst, to.dst);
    let Some(h) = ip.first_chunk_mut::<20>() else {
        return;
    };
    let ip_sum = checksum_adjust(get16(h, ipv4::CHECKSUM), addresses);
    put16(h, ipv4::CHECKSUM, ip_sum);
    wire::put32(h, ipv4::SRC, to.src);
    wire::put32(h, ipv4::DST, to.dst);
    if p.fragment == Fragment::Later {
        return;
    }
    let o = p.l4_offset;
    // The ports (or echo identifier) are always there: the parser saw 8 bytes. The
    // checksum may not be, in the truncated quote of an ICMP error.
    let Some(t) = ip.get_mut(o..) else {
        return;
    };
    let ports = match p.l4 {
        L4::IcmpQuery { request } => {
            let (old, new) = if request {
                (from.sport, to.sport)
            } else {
                (from.dport, to.dport)
            };
            icmp::set_echo_ident(t, new);
            checksum_delta32(old as u32, new as u32)
        }
        L4::Tcp { .. } | L4::Udp => {
            put16(t, udp::SRC_PORT, to.sport);
            put16(t, udp::DST_PORT, to.dport);
            checksum_delta32(
                (from.sport as u32) << 16 | from.dport as u32,
                (to.sport as u32) << 16 | to.dport as u32,
            )
        }
        _ => return,
    };
    let Some((at, zero_means_none)) = l4_checksum(from.proto, &p.l4) else {
        return;
    };
    if t.len() < at + 2 {
        return;
    }
    let old_sum = get16(t, at);
    if zero_means_none && old_sum == 0 {
        return;
    }
    // TCP and UDP checksums cover the addresses too (the pseudo-header); ICMP's does not.
    let pseudo = if from.proto == ICMP { 0 } else { addresses };
    let mut sum = checksum_adjust(old_sum, ports + pseudo);
    if zero_means_none {
        sum = udp::sendable_checksum(sum);
    }
    put16(t, at, sum);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::parse;
    use std::net::Ipv4Addr;

    fn udp_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        wire::testing::Udp4::new(src, sport, dst, dport)
            .payload(b"hello, nat")
            .build()
    }

    #[test]
    fn udp_rewrite_keeps_checksums_valid() {
        let mut p = udp_packet([192, 0, 2, 10], [198, 51, 100, 7], 40000, 53);
        let parsed = parse(&p).unwrap();
        let mut to = parsed.flow;
        to.src = u32::from(Ipv4Addr::new(203, 0, 113, 1));
        to.sport = 1234;
        rewrite(&mut p, &parsed, &to);
        assert_eq!(wire::checksum(&p[..20]), 0, "IPv4 header checksum");
        let l4 = wire::checksum4(
            Ipv4Addr::new(203, 0, 113, 1),
            Ipv4Addr::new(198, 51, 100, 7),
            UDP,
            &p[20..],
        );
        assert_eq!(l4, 0, "UDP checksum verifies");
        assert_eq!(parse(&p).unwrap().flow, to);
    }

    /// Incremental updates of every field combination agree with checksums computed from
    /// scratch, over pseudo-random addresses and ports (xorshift, fixed start).
    #[test]
    fn random_rewrites_match_full_recomputation() {
        let mut rng = wire::XorShift64::new(0x9e37_79b9_7f4a_7c15u64);
        let mut next = move || rng.next_u64();
        for round in 0..5000 {
            let r = next();
            let (src, dst) = ((r as u32).to_be_bytes(), ((r >> 32) as u32).to_be_bytes());
            let mut p = udp_packet(src, dst, next() as u16, next() as u16);
            let parsed = parse(&p).unwrap();
            let mut to = parsed.flow;
            let which = next();
            if which & 1 != 0 {
                to.src = next() as u32;
            }
            if which & 2 != 0 {
                to.dst = next() as u32;
            }
            if which & 4 != 0 {
                to.sport = next() as u16;
            }
            if which & 8 != 0 {
                to.dport = next() as u16;
            }
            rewrite(&mut p, &parsed, &to);
            assert_eq!(wire::checksum(&p[..20]), 0, "round {round}: IPv4 header");
            let (s, d) = (Ipv4Addr::from(to.src), Ipv4Addr::from(to.dst));
            let l4 = wire::checksum4(s, d, UDP, &p[20..]);
            assert_eq!(l4, 0, "round {round}: UDP checksum");
            assert_eq!(parse(&p).unwrap().flow, to, "round {round}");
        }
    }

    #[test]
    fn udp_without_checksum_stays_without() {
        let mut p = udp_packet([192, 0, 2, 10], [198, 51, 100, 7], 40000, 53);
        put16(&mut p, 26, 0);
        let parsed = parse(&p).unwrap();
        let mut to = parsed.flow;
        to.dst = 0x0a000001;
        rewrite(&mut p, &parsed, &to);
        assert_eq!(get16(&p, 26), 0);
        assert_eq!(wire::checksum(&p[..20]), 0);
    }
}
