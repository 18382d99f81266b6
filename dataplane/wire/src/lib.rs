//! Byte-level views of the headers tern reads and writes: Ethernet, ARP, IPv4, IPv6, the
//! ICMP header and its type numbers, UDP, TCP, GRE, and the TCP/UDP checksum fields
//! (`partial`: finishing the partial sums of offloading senders).
//!
//! Plain offsets into `&[u8]`, checked once by the parse stage; everything after it indexes
//! headers it has validated. Internet checksums (RFC 1071) and the incremental update of
//! RFC 1624 live here too.

use std::net::{Ipv4Addr, Ipv6Addr};

pub mod fields;
pub mod gre;
pub mod icmp;
pub mod ndp;
pub mod partial;
pub mod tcp;
pub mod udp;

pub use fields::{get16, get32, put16, put32};

pub type Mac = [u8; 6];
pub const BROADCAST: Mac = [0xff; 6];

pub mod eth {
    pub const LEN: usize = 14;
    pub const TYPE_IPV4: u16 = 0x0800;
    pub const TYPE_ARP: u16 = 0x0806;
    pub const TYPE_IPV6: u16 = 0x86dd;

    #[inline(always)]
    pub fn ethertype(f: &[u8]) -> u16 {
        u16::from_be_bytes([f[12], f[13]])
    }
    #[inline(always)]
    pub fn set_addrs(f: &mut [u8], dst: &super::Mac, src: &super::Mac) {
        // One length check for both addresses (the frame's length is not known here).
        if let Some(addrs) = f.first_chunk_mut::<12>() {
            addrs[..6].copy_from_slice(dst);
            addrs[6..].copy_from_slice(src);
        }
    }
    #[inline]
    pub fn src(f: &[u8]) -> super::Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&f[6..12]);
        m
    }
    #[inline]
    pub fn dst(f: &[u8]) -> super::Mac {
        let mut m = [0; 6];
        m.copy_from_slice(&f[0..6]);
        m
    }
    /// Writes a whole Ethernet header.
    pub fn write(f: &mut [u8], dst: &super::Mac, src: &super::Mac, ethertype: u16) {
        set_addrs(f, dst, src);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    }
}

pub mod arp {
    pub const LEN: usize = 28;
    pub const OP_REQUEST: u16 = 1;
    pub const OP_REPLY: u16 = 2;

    /// A parsed Ethernet/IPv4 ARP packet.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Arp {
        pub op: u16,
        pub sender_mac: super::Mac,
        pub sender_ip: std::net::Ipv4Addr,
        pub target_mac: super::Mac,
        pub target_ip: std::net::Ipv4Addr,
    }

    /// Parses the ARP payload (after Ethernet); `None` unless it is Ethernet/IPv4 ARP.
    pub fn parse(p: &[u8]) -> Option<Arp> {
        if p.len() < LEN || p[0..2] != [0, 1] || p[2..4] != [8, 0] || p[4] != 6 || p[5] != 4 {
            return None;
        }
        let ip = |o: usize| std::net::Ipv4Addr::new(p[o], p[o + 1], p[o + 2], p[o + 3]);
        let mac = |o: usize| {
            let mut m = [0; 6];
            m.copy_from_slice(&p[o..o + 6]);
            m
        };
        Some(Arp {
            op: u16::from_be_bytes([p[6], p[7]]),
            sender_mac: mac(8),
            sender_ip: ip(14),
            target_mac: mac(18),
            target_ip: ip(24),
        })
    }

    pub fn write(p: &mut [u8], a: &Arp) {
        p[0..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
        p[6..8].copy_from_slice(&a.op.to_be_bytes());
        p[8..14].copy_from_slice(&a.sender_mac);
        p[14..18].copy_from_slice(&a.sender_ip.octets());
        p[18..24].copy_from_slice(&a.target_mac);
        p[24..28].copy_from_slice(&a.target_ip.octets());
    }
}

pub mod ipv4 {
    use std::net::Ipv4Addr;

    pub const MIN_LEN: usize = 20;
    pub const PROTO_ICMP: u8 = 1;
    pub const PROTO_TCP: u8 = 6;
    pub const PROTO_UDP: u8 = 17;
    pub const FLAG_DF: u16 = 0x4000;
    pub const FLAG_MF: u16 = 0x2000;
    pub const OFFSET_MASK: u16 = 0x1fff;

    /// Field offsets from the start of the header.
    pub const TOS: usize = 1;
    pub const TOTAL_LEN: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLAGS_FRAG: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTO: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC: usize = 12;
    pub const DST: usize = 16;

    #[inline(always)]
    pub fn version(h: &[u8]) -> u8 {
        h[0] >> 4
    }
    #[inline(always)]
    pub fn header_len(h: &[u8]) -> usize {
        ((h[0] & 0x0f) as usize) * 4
    }
    #[inline(always)]
    pub fn total_len(h: &[u8]) -> usize {
        u16::from_be_bytes([h[2], h[3]]) as usize
    }
    #[inline]
    pub fn ident(h: &[u8]) -> u16 {
        u16::from_be_bytes([h[4], h[5]])
    }
    #[inline(always)]
    pub fn flags_frag(h: &[u8]) -> u16 {
        u16::from_be_bytes([h[6], h[7]])
    }
    #[inline(always)]
    pub fn ttl(h: &[u8]) -> u8 {
        h[8]
    }
    #[inline(always)]
    pub fn proto(h: &[u8]) -> u8 {
        h[9]
    }
    #[inline(always)]
    pub fn src(h: &[u8]) -> Ipv4Addr {
        Ipv4Addr::new(h[12], h[13], h[14], h[15])
    }
    #[inline(always)]
    pub fn src_bits(h: &[u8]) -> u32 {
        u32::from_be_bytes([h[12], h[13], h[14], h[15]])
    }
    #[inline(always)]
    pub fn dst_bits(h: &[u8]) -> u32 {
        u32::from_be_bytes([h[16], h[17], h[18], h[19]])
    }
    #[inline]
    pub fn dst(h: &[u8]) -> Ipv4Addr {
        Ipv4Addr::from_bits(dst_bits(h))
    }
    /// Any fragment of a datagram: more fragments follow, or the offset is non-zero.
    #[inline(always)]
    pub fn is_fragment(h: &[u8]) -> bool {
        flags_frag(h) & (FLAG_MF | OFFSET_MASK) != 0
    }
    /// True for a fragment other than the first (offset ≠ 0).
    #[inline]
    pub fn is_later_fragment(h: &[u8]) -> bool {
        flags_frag(h) & OFFSET_MASK != 0
    }

    /// Decrements the TTL and patches the header checksum incrementally (RFC 1624 eqn. 3):
    /// the 16-bit word holding TTL and protocol drops by 0x0100.
    #[inline(always)]
    pub fn decrement_ttl(h: &mut [u8]) {
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1;
        let new = u16::from_be_bytes([h[8], h[9]]);
        let sum = u16::from_be_bytes([h[10], h[11]]);
        h[10..12].copy_from_slice(&super::checksum_update(sum, old, new).to_be_bytes());
    }

    /// The fields of a header without options, as tern writes one.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Header {
        pub tos: u8,
        pub total_len: u16,
        pub ident: u16,
        pub flags_frag: u16,
        pub ttl: u8,
        pub proto: u8,
        pub src: Ipv4Addr,
        pub dst: Ipv4Addr,
    }

    impl Header {
        /// A header for `proto` from `src` to `dst`: TOS 0, identification 0, no flags,
        /// TTL 64, total length 0 (a caller sets it, or leaves it to a later pass).
        #[inline(always)]
        pub fn new(proto: u8, src: Ipv4Addr, dst: Ipv4Addr) -> Header {
            Header {
                tos: 0,
                total_len: 0,
                ident: 0,
                flags_frag: 0,
                ttl: 64,
                proto,
                src,
                dst,
            }
        }

        /// Writes the header into `h[..20]` with a fresh checksum.
        #[inline(always)]
        pub fn emit(&self, h: &mut [u8]) {
            h[0] = 0x45;
            h[1] = self.tos;
            h[2..4].copy_from_slice(&self.total_len.to_be_bytes());
            h[4..6].copy_from_slice(&self.ident.to_be_bytes());
            h[6..8].copy_from_slice(&self.flags_frag.to_be_bytes());
            h[8] = self.ttl;
            h[9] = self.proto;
            h[10..12].copy_from_slice(&[0, 0]);
            h[12..16].copy_from_slice(&self.src.octets());
            h[16..20].copy_from_slice(&self.dst.octets());
            let c = super::checksum(&h[..20]);
            h[10..12].copy_from_slice(&c.to_be_bytes());
        }
    }

    /// Recomputes the header checksum over `header_len` bytes.
    pub fn fill_checksum(h: &mut [u8]) {
        let hl = header_len(h);
        h[10..12].copy_from_slice(&[0, 0]);
        let c = super::checksum(&h[..hl]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

pub mod ipv6 {
    use std::net::Ipv6Addr;

    pub const LEN: usize = 40;
    pub const NEXT_ICMP: u8 = 58;
    pub const NEXT_FRAGMENT: u8 = 44;
    pub const MIN_MTU: usize = 1280;

    #[inline(always)]
    pub fn version(h: &[u8]) -> u8 {
        h[0] >> 4
    }
    #[inline(always)]
    pub fn payload_len(h: &[u8]) -> usize {
        u16::from_be_bytes([h[4], h[5]]) as usize
    }
    #[inline(always)]
    pub fn next_header(h: &[u8]) -> u8 {
        h[6]
    }
    #[inline(always)]
    pub fn hop_limit(h: &[u8]) -> u8 {
        h[7]
    }
    #[inline]
    pub fn src(h: &[u8]) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[8..24]);
        Ipv6Addr::from(a)
    }
    #[inline]
    pub fn dst(h: &[u8]) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[24..40]);
        Ipv6Addr::from(a)
    }
    #[inline(always)]
    pub fn dst_bits(h: &[u8]) -> u128 {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[24..40]);
        u128::from_be_bytes(a)
    }
    pub fn write(
        h: &mut [u8],
        payload: u16,
        next: u8,
        hop_limit: u8,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) {
        h[0..4].copy_from_slice(&[0x60, 0, 0, 0]);
        h[4..6].copy_from_slice(&payload.to_be_bytes());
        h[6] = next;
        h[7] = hop_limit;
        h[8..24].copy_from_slice(&src.octets());
        h[24..40].copy_from_slice(&dst.octets());
    }
    /// The solicited-node multicast address of `a` (RFC 4291 §2.7.1).
    pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
        let o = a.octets();
        Ipv6Addr::new(
            0xff02,
            0,
            0,
            0,
            0,
            1,
            0xff00 | o[13] as u16,
            u16::from_be_bytes([o[14], o[15]]),
        )
    }
    /// The Ethernet multicast MAC of an IPv6 multicast address (RFC 2464 §7).
    pub fn multicast_mac(a: Ipv6Addr) -> super::Mac {
        let o = a.octets();
        [0x33, 0x33, o[12], o[13], o[14], o[15]]
    }
}

pub mod icmp4 {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAMETER_PROBLEM: u8 = 12;
    pub const CODE_NET_UNREACHABLE: u8 = 0;
    pub const CODE_HOST_UNREACHABLE: u8 = 1;
    pub const CODE_PORT_UNREACHABLE: u8 = 3;
    pub const CODE_FRAG_NEEDED: u8 = 4;
    /// Communication administratively prohibited (RFC 1812 §5.2.7.1).
    pub const CODE_ADMIN_PROHIBITED: u8 = 13;

    /// ICMP types that are errors: never answered with another error (RFC 1812 §4.3.2.7).
    #[inline]
    pub fn is_error(t: u8) -> bool {
        matches!(t, 3 | 4 | 5 | 11 | 12)
    }
}

pub mod icmp6 {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    pub const NEIGHBOR_ADVERT: u8 = 136;
    pub const CODE_NO_ROUTE: u8 = 0;
    pub const CODE_ADDR_UNREACHABLE: u8 = 3;
    pub const CODE_PORT_UNREACHABLE: u8 = 4;
    pub const OPT_SOURCE_LL: u8 = 1;
    pub const OPT_TARGET_LL: u8 = 2;

    /// Error messages have types below 128 (RFC 4443 §2.1).
    #[inline]
    pub fn is_error(t: u8) -> bool {
        t < 128
    }
}

/// The Internet checksum (RFC 1071) of `data`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    fold(sum_words(data, 0))
}

/// Whether an IPv4 header without options (nearly every packet) carries a correct
/// checksum: `checksum(h) == 0`, in five 32-bit loads and one divisibility test.
///
/// The ones'-complement sum of 16-bit words is their plain sum modulo 2^16 − 1, written
/// 0xffff rather than 0 unless every word is zero; a header verifies when that sum is
/// 0xffff. A 32-bit word folds to its two halves (2^16 ≡ 1), and byte order does not
/// matter to divisibility (RFC 1071 §2(B)), so: the plain sum of the five native-order
/// words is a non-zero multiple of 65535. That is one multiply and one compare (below),
/// where folding to 16 bits took a dozen dependent instructions.
#[inline(always)]
pub fn ipv4_20_verifies(h: &[u8; 20]) -> bool {
    let word = |i: usize| u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as u64;
    let sum = word(0) + word(4) + word(8) + word(12) + word(16);
    sum != 0 && multiple_of_65535(sum)
}

/// `n % 65535 == 0` as a multiply by the inverse of 65535 modulo 2^64 and a compare
/// (Granlund–Montgomery; Lemire et al. 2019): for odd d, multiplying by d's inverse maps
/// the multiples of d onto 0..=u64::MAX / d, and every other n above it.
#[inline(always)]
fn multiple_of_65535(n: u64) -> bool {
    const D: u64 = 0xffff;
    const INVERSE: u64 = {
        // Newton's iteration doubles the correct low bits; an odd d is its own inverse
        // modulo 8 (3 bits), so five rounds give 96 >= 64.
        let mut x = D;
        let mut round = 0;
        while round < 5 {
            x = x.wrapping_mul(2u64.wrapping_sub(D.wrapping_mul(x)));
            round += 1;
        }
        assert!(D.wrapping_mul(x) == 1);
        x
    };
    n.wrapping_mul(INVERSE) <= u64::MAX / D
}

/// Ones'-complement sum of big-endian 16-bit words, added to `acc` (unfolded).
///
/// Summed four bytes at a time: a big-endian 32-bit word is two 16-bit words, and since
/// 2^16 ≡ 1 (mod 2^16 − 1) its value folds to their sum (RFC 1071 §2(B), "parallel
/// summation"). Half the iterations of word-by-word for an IPv4 header.
#[inline]
pub fn sum_words(data: &[u8], mut acc: u64) -> u64 {
    let mut quads = data.chunks_exact(4);
    for q in &mut quads {
        acc += u32::from_be_bytes([q[0], q[1], q[2], q[3]]) as u64;
    }
    let rest = quads.remainder();
    let mut pairs = rest.chunks_exact(2);
    for c in &mut pairs {
        acc += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [last] = pairs.remainder() {
        acc += (*last as u64) << 8;
    }
    acc
}

/// Folds a running sum to 16 bits and complements it.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    // Four folds take any u64 to 16 bits (64 → 49 → 34 → 19 → 17 → ≤ 16 with the carry).
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for one 16-bit field.
#[inline(always)]
pub fn checksum_update(sum: u16, old: u16, new: u16) -> u16 {
    checksum_adjust(sum, (!old as u32) + new as u32)
}

/// The unfolded difference (~m + m' for each 16-bit half) a 32-bit field changing from
/// `old` to `new` makes to a checksum. Differences add up, so a rewrite of several fields
/// folds their sum into each checksum once (`checksum_adjust`).
#[inline(always)]
pub fn checksum_delta32(old: u32, new: u32) -> u32 {
    let old = !old;
    (old >> 16) + (old & 0xffff) + (new >> 16) + (new & 0xffff)
}

/// HC' = ~(~HC + Σ(~m + m')) folded to 16 bits; `delta` is a sum of `checksum_delta32`s
/// (or of ~m + m' terms), at most a few thousand of them.
#[inline(always)]
pub fn checksum_adjust(sum: u16, delta: u32) -> u16 {
    let mut acc = (!sum as u32) + delta;
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    !(acc as u16)
}

/// The ICMPv6 (or any upper-layer-over-IPv6) checksum: pseudo-header plus `payload`.
pub fn checksum6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> u16 {
    let mut acc = sum_words(&src.octets(), 0);
    acc = sum_words(&dst.octets(), acc);
    acc += payload.len() as u64 + next as u64;
    fold(sum_words(payload, acc))
}

/// An IPv4 upper-layer checksum (UDP/TCP) with its pseudo-header.
pub fn checksum4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> u16 {
    let mut acc = sum_words(&src.octets(), 0);
    acc = sum_words(&dst.octets(), acc);
    acc += payload.len() as u64 + proto as u64;
    fold(sum_words(payload, acc))
}

#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(any(test, feature = "testing"))]
pub use testing::XorShift64;

#[cfg(test)]
mod tests {
    use super::*;

    /// The example header of RFC 1071 §3 / the classic 20-byte header from Wikipedia.
    const HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    /// Word-by-word summation with a folding loop, as RFC 1071 writes it: the reference
    /// the four-bytes-at-a-time sum and the fixed fold must agree with.
    fn reference(data: &[u8], mut acc: u64) -> u16 {
        for c in data.chunks(2) {
            acc += (u64::from(c[0]) << 8) | c.get(1).map_or(0, |&b| u64::from(b));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn quad_summation_and_fold_match_the_reference() {
        let mut rng = super::XorShift64::new(0x2545_f491_4f6c_dd1du64);
        let mut next = move || rng.next_u64();
        for round in 0..20_000 {
            let len = (next() % 90) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Starting sums up to the largest a caller builds (pseudo-headers, u64 carry).
            let acc = match round % 3 {
                0 => 0,
                1 => next() >> 16,
                _ => (1 << 47) + (next() >> 20),
            };
            assert_eq!(
                fold(sum_words(&data, acc)),
                reference(&data, acc),
                "{data:?} {acc}"
            );
        }
        assert_eq!(fold(u64::MAX), reference(&[], u64::MAX));
    }

    #[test]
    fn multiple_of_65535_agrees_with_the_remainder() {
        let mut rng = super::XorShift64::new(0x2545_f491_4f6c_dd1d);
        for k in 0..200_000u64 {
            let n = match k % 4 {
                0 => k * 0xffff,
                1 => k * 0xffff + 1 + rng.next_u64() % 0xfffe,
                2 => rng.next_u64() >> (k % 40),
                _ => rng.next_u64(),
            };
            assert_eq!(multiple_of_65535(n), n % 0xffff == 0, "{n}");
        }
        // 2^64 - 1 = (2^16 - 1)(2^16 + 1)(2^32 + 1).
        assert!(multiple_of_65535(0) && multiple_of_65535(u64::MAX));
        assert!(!multiple_of_65535(u64::MAX - 1));
    }

    #[test]
    fn option_free_header_verifies_exactly_when_the_reference_sums_to_zero() {
        let mut rng = super::XorShift64::new(0x9e37_79b9_7f4a_7c15);
        assert!(ipv4_20_verifies(&HEADER));
        assert!(!ipv4_20_verifies(&[0; 20]), "an all-zero header sums to +0");
        for round in 0..20_000 {
            let mut h = [0u8; 20];
            for b in &mut h {
                *b = rng.next_u64() as u8;
            }
            assert_eq!(ipv4_20_verifies(&h), reference(&h, 0) == 0, "{h:?}");
            // With its checksum stored it verifies, and no single flipped bit does
            // (it moves the sum by ±2^k, never a multiple of 65535).
            h[10..12].fill(0);
            let sum = checksum(&h);
            h[10..12].copy_from_slice(&sum.to_be_bytes());
            assert!(ipv4_20_verifies(&h), "{h:?}");
            h[round % 20] ^= 1 << (round % 8);
            assert!(!ipv4_20_verifies(&h), "{h:?}");
        }
    }

    #[test]
    fn known_header_checksum_verifies_and_recomputes() {
        assert_eq!(checksum(&HEADER), 0, "a correct header sums to zero");
        let mut h = HEADER;
        ipv4::fill_checksum(&mut h);
        assert_eq!(h[10..12], [0xb8, 0x61]);
    }

    #[test]
    fn incremental_ttl_update_matches_full_recompute() {
        for ttl in 2..=255u8 {
            for proto in [1u8, 6, 17, 255] {
                let mut h = HEADER;
                h[8] = ttl;
                h[9] = proto;
                ipv4::fill_checksum(&mut h);
                ipv4::decrement_ttl(&mut h);
                let incremental = [h[10], h[11]];
                ipv4::fill_checksum(&mut h);
                assert_eq!(incremental, [h[10], h[11]], "ttl {ttl} proto {proto}");
                assert_eq!(h[8], ttl - 1);
            }
        }
    }

    #[test]
    fn solicited_node_address_and_mac() {
        let a: Ipv6Addr = "2001:db8::1:2:a3b4:c5d6".parse().expect("addr");
        assert_eq!(
            ipv6::solicited_node(a),
            "ff02::1:ffb4:c5d6".parse::<Ipv6Addr>().expect("addr")
        );
        assert_eq!(
            ipv6::multicast_mac(ipv6::solicited_node(a)),
            [0x33, 0x33, 0xff, 0xb4, 0xc5, 0xd6]
        );
    }

    #[test]
    fn arp_round_trip() {
        let a = arp::Arp {
            op: arp::OP_REQUEST,
            sender_mac: [2, 0, 0, 0, 0, 1],
            sender_ip: Ipv4Addr::new(192, 0, 2, 1),
            target_mac: [0; 6],
            target_ip: Ipv4Addr::new(192, 0, 2, 2),
        };
        let mut b = [0u8; arp::LEN];
        arp::write(&mut b, &a);
        assert_eq!(arp::parse(&b), Some(a));
        b[5] = 16;
        assert_eq!(arp::parse(&b), None, "only Ethernet/IPv4 ARP");
    }
}
