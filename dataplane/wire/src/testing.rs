//! Fixtures for tests and benchmarks (the `testing` feature): not part of the product.

/// Marsaglia's xorshift64: repeatable pseudo-random input for tests, fuzz-style loops and
/// benchmark fixtures, the same sequence on every run for a given seed. Not for anything an
/// outsider could aim at (hash seeds come from ahash's runtime RNG).
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator starting from `seed` (not zero: zero stays zero).
    pub fn new(seed: u64) -> XorShift64 {
        XorShift64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// An IPv4 UDP packet (from the IP header on) with both checksums right: the one builder
/// the tests and benchmarks share. Identification 1, TTL 64, no payload unless set.
#[derive(Debug, Clone, Copy)]
pub struct Udp4<'a> {
    pub src: std::net::Ipv4Addr,
    pub sport: u16,
    pub dst: std::net::Ipv4Addr,
    pub dport: u16,
    pub ident: u16,
    pub ttl: u8,
    pub payload: &'a [u8],
}

impl<'a> Udp4<'a> {
    pub fn new(
        src: impl Into<std::net::Ipv4Addr>,
        sport: u16,
        dst: impl Into<std::net::Ipv4Addr>,
        dport: u16,
    ) -> Udp4<'a> {
        Udp4 {
            src: src.into(),
            sport,
            dst: dst.into(),
            dport,
            ident: 1,
            ttl: 64,
            payload: &[],
        }
    }

    pub fn ident(self, ident: u16) -> Udp4<'a> {
        Udp4 { ident, ..self }
    }

    pub fn payload(self, payload: &'a [u8]) -> Udp4<'a> {
        Udp4 { payload, ..self }
    }

    pub fn build(&self) -> Vec<u8> {
        let udp_len = 8 + self.payload.len();
        let mut p = vec![0u8; IPV4_HEADER + udp_len];
        let total = p.len() as u16;
        let (src, dst) = (self.src, self.dst);
        crate::ipv4::Header {
            total_len: total,
            ident: self.ident,
            ttl: self.ttl,
            ..crate::ipv4::Header::new(crate::ipv4::PROTO_UDP, src, dst)
        }
        .emit(&mut p);
        let udp = &mut p[IPV4_HEADER..];
        crate::udp::write(udp, self.sport, self.dport, udp_len as u16);
        udp[crate::udp::LEN..].copy_from_slice(self.payload);
        let sum = crate::checksum4(src, dst, crate::ipv4::PROTO_UDP, udp);
        crate::put16(
            udp,
            crate::udp::CHECKSUM,
            crate::udp::sendable_checksum(sum),
        );
        p
    }

    /// The packet in an Ethernet frame from `src_mac` to `dst_mac`.
    pub fn frame(&self, dst_mac: &crate::Mac, src_mac: &crate::Mac) -> Vec<u8> {
        let packet = self.build();
        let mut f = vec![0u8; crate::eth::LEN];
        crate::eth::write(&mut f, dst_mac, src_mac, crate::eth::TYPE_IPV4);
        f.extend_from_slice(&packet);
        f
    }
}

/// An IPv4 header without options.
const IPV4_HEADER: usize = 20;
