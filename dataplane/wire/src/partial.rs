//! Partial TCP/UDP checksums: a sender that offloads its transport checksum (a Linux host
//! with tx checksumming on, the default on veth and virtio) stores only the pseudo-header
//! sum in the checksum field and leaves the rest to "the device". The kernel marks such a
//! packet `CHECKSUM_PARTIAL` in its skb, but the mark does not cross into an AF_XDP ring:
//! tern receives the bytes alone and must finish the sum itself, or every receiver drops
//! the packet.
//!
//! The test is cheap because it needs no pass over the payload: a partial field holds
//! the folded pseudo-header sum (Linux: `~csum_tcpudp_magic(…, 0)` for IPv4,
//! `~csum_ipv6_magic(…, 0)` for IPv6), which is computed from the IP header alone. Only a
//! field congruent to it (all partial packets, and 1 in 65535 complete ones) goes on to
//! the full sum: a packet that verifies as it is is never touched; one that does not gets
//! the checksum the device would have written.

use super::{fold, get16, ipv4, multiple_of_65535, put16, sum_words, tcp, udp};

/// IPv6's next-header values for TCP and UDP (the same numbers as IPv4's protocols).
const TCP: u8 = ipv4::PROTO_TCP;
const UDP: u8 = ipv4::PROTO_UDP;

/// The factor a 16-bit big-endian value picks up when it is read in native byte order,
/// modulo 2^16 − 1: a byte swap of x is 256·x there (x = 256·hi + lo ↦ 256·lo + hi ≡
/// 256·(256·hi + lo), since 2^16 ≡ 1). The candidate test sums native words (no byte
/// swaps), so the numbers it adds (protocol, length) are scaled the same way.
const NATIVE_SCALE: u64 = if cfg!(target_endian = "little") {
    256
} else {
    1
};

/// The checksum field's offset in the transport header of protocol `proto`, for TCP and
/// UDP.
#[inline(always)]
fn checksum_at(proto: u8) -> Option<usize> {
    match proto {
        TCP => Some(tcp::CHECKSUM),
        UDP => Some(udp::CHECKSUM),
        _ => None,
    }
}

#[inline(always)]
fn native_word(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 4)
        .and_then(|w| w.first_chunk::<4>())
        .map_or(0, |w| u32::from_ne_bytes(*w) as u64)
}

/// Whether `field` (as it lies in memory) is congruent to the pseudo-header sum
/// `native_sum` (address words read natively, protocol and length already scaled):
/// `native_sum − field ≡ 0 (mod 2^16 − 1)`. One multiply and one compare.
#[inline(always)]
fn congruent(native_sum: u64, field: [u8; 2]) -> bool {
    multiple_of_65535(native_sum + 0xffff - u16::from_ne_bytes(field) as u64)
}

/// Whether the IPv4 packet `ip` (a header without options, `fixed`, validated; `ip` ends
/// where the packet does) is TCP or UDP with a checksum field congruent to its
/// pseudo-header sum: a candidate for [`complete_v4`]. The test the receive path makes on
/// every packet, from the header it has just checked.
#[inline(always)]
pub fn candidate_v4_20(fixed: &[u8; ipv4::MIN_LEN], ip: &[u8]) -> bool {
    let proto = fixed[9];
    // One load for "TCP or UDP" and where the field is; 0 for any other protocol.
    let at = FIELD_AFTER_20[proto as usize] as usize;
    if at == 0 {
        return false;
    }
    let Some(&field) = ip.get(at..).and_then(|f| f.first_chunk::<2>()) else {
        return false;
    };
    let word = |i: usize| u32::from_ne_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
    let len_and_proto = (ip.len() - ipv4::MIN_LEN) as u64 + proto as u64;
    congruent(
        word(12) as u64 + word(16) as u64 + len_and_proto * NATIVE_SCALE,
        field,
    )
}

/// By IPv4 protocol: the offset of the transport checksum in a packet whose header has no
/// options, or 0 for a protocol without one here.
const FIELD_AFTER_20: [u8; 256] = {
    let mut t = [0u8; 256];
    t[TCP as usize] = (ipv4::MIN_LEN + tcp::CHECKSUM) as u8;
    t[UDP as usize] = (ipv4::MIN_LEN + udp::CHECKSUM) as u8;
    t
};

/// Finishes a partial TCP/UDP checksum in the IPv4 packet `ip` (from its header to its
/// last byte, header already validated). Returns whether it wrote one.
#[inline(always)]
pub fn complete_v4(ip: &mut [u8]) -> bool {
    let Some(fixed) = ip.first_chunk::<{ ipv4::MIN_LEN }>() else {
        return false;
    };
    let proto = fixed[9];
    let Some(at) = checksum_at(proto) else {
        return false;
    };
    let ihl = ipv4::header_len(fixed);
    let Some(&field) = ip.get(ihl + at..).and_then(|f| f.first_chunk::<2>()) else {
        return false;
    };
    let l4_len = (ip.len() - ihl) as u64;
    let pseudo = native_word(ip, 12) + native_word(ip, 16) + (proto as u64 + l4_len) * NATIVE_SCALE;
    if !congruent(pseudo, field) {
        return false;
    }
    complete_v4_slow(ip, ihl, proto, at)
}

#[cold]
#[inline(never)]
fn complete_v4_slow(ip: &mut [u8], ihl: usize, proto: u8, at: usize) -> bool {
    // A sender's partial sum covers a whole datagram; a fragment's field is just data.
    if ipv4::is_fragment(ip) {
        return false;
    }
    let l4_len = ip.len() - ihl;
    let pseudo = sum_words(&ip[12..20], 0) + proto as u64 + l4_len as u64;
    complete(&mut ip[ihl..], pseudo, at, proto == UDP)
}

/// [`complete_v4`] for an IPv6 packet whose next header is TCP or UDP (a packet with
/// extension headers is left alone: offloading senders do not emit them).
#[inline(always)]
pub fn complete_v6(ip: &mut [u8]) -> bool {
    const LEN: usize = super::ipv6::LEN;
    let Some(fixed) = ip.first_chunk::<LEN>() else {
        return false;
    };
    let next = fixed[6];
    let Some(at) = checksum_at(next) else {
        return false;
    };
    let Some(&field) = ip.get(LEN + at..).and_then(|f| f.first_chunk::<2>()) else {
        return false;
    };
    let l4_len = (ip.len() - LEN) as u64;
    let addresses: u64 = (8..LEN).step_by(4).map(|i| native_word(fixed, i)).sum();
    if !congruent(addresses + (next as u64 + l4_len) * NATIVE_SCALE, field) {
        return false;
    }
    complete_v6_slow(ip, next, at)
}

#[cold]
#[inline(never)]
fn complete_v6_slow(ip: &mut [u8], next: u8, at: usize) -> bool {
    const LEN: usize = super::ipv6::LEN;
    let l4_len = ip.len() - LEN;
    let pseudo = sum_words(&ip[8..LEN], 0) + next as u64 + l4_len as u64;
    complete(&mut ip[LEN..], pseudo, at, next == UDP)
}

/// The full check behind a congruent field: leaves a transport segment `l4` that verifies
/// against `pseudo` (or a UDP one without a checksum, or whose length disagrees with the
/// IP header's) as it is; otherwise its field holds the pseudo-header sum, so the sum of
/// the segment as it lies is pseudo-header plus data, and its complement is the checksum.
fn complete(l4: &mut [u8], pseudo: u64, at: usize, udp: bool) -> bool {
    let field = get16(l4, at);
    if udp && (field == 0 || udp::length(l4) as usize != l4.len()) {
        return false;
    }
    if fold(sum_words(l4, pseudo)) == 0 {
        return false;
    }
    let mut sum = fold(sum_words(l4, 0));
    if udp {
        sum = udp::sendable_checksum(sum);
    }
    put16(l4, at, sum);
    true
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::{checksum4, checksum6, ipv6, XorShift64};

    /// The folded pseudo-header sum a Linux sender leaves in the field (not complemented).
    fn partial_field(pseudo: u64) -> u16 {
        !fold(pseudo)
    }

    fn v4_packet(rng: &mut XorShift64, proto: u8, payload: usize) -> Vec<u8> {
        let l4_len = if proto == TCP { 20 } else { 8 } + payload;
        let mut p = vec![0u8; 20 + l4_len];
        let src = Ipv4Addr::from_bits(rng.next_u64() as u32);
        let dst = Ipv4Addr::from_bits(rng.next_u64() as u32);
        let total = p.len() as u16;
        ipv4::Header {
            total_len: total,
            ident: 1,
            ..ipv4::Header::new(proto, src, dst)
        }
        .emit(&mut p);
        for b in &mut p[20..] {
            *b = rng.next_u64() as u8;
        }
        if proto == TCP {
            p[20 + 12] = 0x50;
        } else {
            p[24..26].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let at = 20 + checksum_at(proto).unwrap_or(0);
        p[at..at + 2].fill(0);
        let mut c = checksum4(src, dst, proto, &p[20..]);
        if proto == UDP && c == 0 {
            c = 0xffff;
        }
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn v4_partial(p: &[u8]) -> Vec<u8> {
        let mut q = p.to_vec();
        let proto = q[9];
        let at = 20 + checksum_at(proto).unwrap_or(0);
        let pseudo = sum_words(&q[12..20], 0) + proto as u64 + (q.len() - 20) as u64;
        q[at..at + 2].copy_from_slice(&partial_field(pseudo).to_be_bytes());
        q
    }

    #[test]
    fn partial_ipv4_checksums_are_completed_to_what_the_device_writes() {
        let mut rng = XorShift64::new(0x51ed_2701_a3c4_9b17);
        for round in 0..4000 {
            let proto = if round % 2 == 0 { TCP } else { UDP };
            let good = v4_packet(&mut rng, proto, round % 1400);
            let mut partial = v4_partial(&good);
            if partial == good {
                continue; // the complete sum happens to equal the pseudo sum
            }
            assert!(complete_v4(&mut partial), "round {round}");
            assert_eq!(partial, good, "round {round}");
        }
    }

    /// The receive path's test on option-free headers flags exactly the packets
    /// `complete_v4` acts on (and the rare complete ones it then verifies).
    #[test]
    fn the_option_free_candidate_test_agrees_with_the_general_one() {
        let mut rng = XorShift64::new(0x0ddb_a11c_afe5_eed5);
        for round in 0..20_000 {
            let proto = [TCP, UDP, 1, 47][round % 4];
            let good = v4_packet(&mut rng, proto, round % 100);
            for p in [good.clone(), v4_partial(&good)] {
                let fixed = p.first_chunk::<20>().expect("header");
                let mut q = p.clone();
                let completed = complete_v4(&mut q);
                assert!(!completed || candidate_v4_20(fixed, &p), "round {round}");
                let partial = (proto == TCP || proto == UDP) && v4_partial(&p) == p;
                assert_eq!(candidate_v4_20(fixed, &p), partial, "round {round}");
            }
        }
    }

    #[test]
    fn complete_checksums_are_never_touched() {
        let mut rng = XorShift64::new(0x1234_5678_9abc_def1);
        for round in 0..20_000 {
            let proto = if round % 2 == 0 { TCP } else { UDP };
            let good = v4_packet(&mut rng, proto, round % 64);
            let mut p = good.clone();
            assert!(!complete_v4(&mut p), "round {round}");
            assert_eq!(p, good);
        }
        // A complete checksum equal to the pseudo sum (1 in 65535): verified, left alone.
        let mut hits = 0;
        for round in 0..2_000_000u32 {
            let good = v4_packet(&mut rng, UDP, 4);
            if v4_partial(&good) != good {
                continue;
            }
            hits += 1;
            let mut p = good.clone();
            assert!(!complete_v4(&mut p), "round {round}");
            assert_eq!(p, good);
            if hits == 3 {
                break;
            }
        }
        assert!(
            hits > 0,
            "no packet whose checksum equals its pseudo sum was drawn"
        );
    }

    #[test]
    fn fragments_udp_without_checksum_and_short_segments_are_left_alone() {
        let mut rng = XorShift64::new(77);
        let good = v4_packet(&mut rng, UDP, 100);
        // A first fragment whose field is the pseudo sum of its own bytes.
        let mut frag = v4_partial(&good);
        frag[6] = 0x20; // MF
        crate::ipv4::fill_checksum(&mut frag);
        let before = frag.clone();
        assert!(!complete_v4(&mut frag));
        assert_eq!(frag, before);
        // UDP with checksum 0 ("none") stays none.
        let mut none = good.clone();
        none[26..28].fill(0);
        let before = none.clone();
        assert!(!complete_v4(&mut none));
        assert_eq!(none, before);
        // A TCP header cut before its checksum.
        let mut short = v4_packet(&mut rng, TCP, 0);
        short.truncate(20 + 10);
        short[2..4].copy_from_slice(&30u16.to_be_bytes());
        assert!(!complete_v4(&mut short));
    }

    #[test]
    fn partial_ipv6_checksums_are_completed() {
        let mut rng = XorShift64::new(0xdead_beef_0bad_f00d);
        for round in 0..4000 {
            let next = if round % 2 == 0 { TCP } else { UDP };
            let l4_len = if next == TCP { 20 } else { 8 } + round % 1300;
            let mut p = vec![0u8; ipv6::LEN + l4_len];
            let src = Ipv6Addr::from_bits((rng.next_u64() as u128) << 64 | rng.next_u64() as u128);
            let dst = Ipv6Addr::from_bits((rng.next_u64() as u128) << 64 | rng.next_u64() as u128);
            ipv6::write(&mut p, l4_len as u16, next, 64, src, dst);
            for b in &mut p[ipv6::LEN..] {
                *b = rng.next_u64() as u8;
            }
            if next == UDP {
                p[44..46].copy_from_slice(&(l4_len as u16).to_be_bytes());
            }
            let at = ipv6::LEN + checksum_at(next).unwrap_or(0);
            p[at..at + 2].fill(0);
            let mut c = checksum6(src, dst, next, &p[ipv6::LEN..]);
            if next == UDP && c == 0 {
                c = 0xffff;
            }
            p[at..at + 2].copy_from_slice(&c.to_be_bytes());
            let good = p.clone();
            assert!(!complete_v6(&mut p), "a complete checksum is left alone");
            let pseudo = sum_words(&p[8..40], 0) + next as u64 + l4_len as u64;
            p[at..at + 2].copy_from_slice(&partial_field(pseudo).to_be_bytes());
            if p == good {
                continue;
            }
            assert!(complete_v6(&mut p), "round {round}");
            assert_eq!(p, good, "round {round}");
        }
    }
}
