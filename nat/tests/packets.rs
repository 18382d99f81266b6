//! Hand-built IPv4 packets for the NAT tests, and a checker for every checksum in them.
#![allow(dead_code)]

use std::net::Ipv4Addr;

pub fn a(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().unwrap())
}

fn ip_header(p: &mut [u8], proto: u8, src: u32, dst: u32) {
    let total = p.len() as u16;
    wire::ipv4::Header {
        total_len: total,
        ident: 0x1234,
        ..wire::ipv4::Header::new(proto, src.into(), dst.into())
    }
    .emit(p);
}

fn l4_sum(p: &mut [u8], at: usize) {
    let (src, dst, proto) = (wire::ipv4::src(p), wire::ipv4::dst(p), wire::ipv4::proto(p));
    p[20 + at..22 + at].copy_from_slice(&[0, 0]);
    let s = wire::checksum4(src, dst, proto, &p[20..]);
    p[20 + at..22 + at].copy_from_slice(&s.to_be_bytes());
}

pub fn udp(src: u32, sport: u16, dst: u32, dport: u16) -> Vec<u8> {
    wire::testing::Udp4::new(src, sport, dst, dport)
        .ident(0x1234)
        .payload(b"tern nat test payload")
        .build()
}

/// A UDP datagram with 64 more bytes of payload than `udp`'s, IP identification `ident`
/// and every checksum right: something to cut into fragments (`fragments`).
pub fn big_udp(src: u32, sport: u16, dst: u32, dport: u16, ident: u16) -> Vec<u8> {
    let mut big = udp(src, sport, dst, dport);
    big[4..6].copy_from_slice(&ident.to_be_bytes());
    big.extend_from_slice(&[0x55; 64]);
    let total = big.len() as u16;
    big[2..4].copy_from_slice(&total.to_be_bytes());
    big[24..26].copy_from_slice(&(total - 20).to_be_bytes());
    wire::ipv4::fill_checksum(&mut big);
    l4_sum(&mut big, 6);
    big
}

pub fn tcp(src: u32, sport: u16, dst: u32, dport: u16, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    ip_header(&mut p, 6, src, dst);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..28].copy_from_slice(&1000u32.to_be_bytes());
    p[32] = 5 << 4;
    p[33] = flags;
    p[34..36].copy_from_slice(&8192u16.to_be_bytes());
    l4_sum(&mut p, 16);
    p
}

pub fn echo(src: u32, dst: u32, id: u16, request: bool) -> Vec<u8> {
    let mut p = vec![0u8; 20 + 16];
    ip_header(&mut p, 1, src, dst);
    p[20] = if request { 8 } else { 0 };
    p[24..26].copy_from_slice(&id.to_be_bytes());
    p[26..28].copy_from_slice(&7u16.to_be_bytes());
    p[28..].copy_from_slice(b"pingdata");
    let s = wire::checksum(&p[20..]);
    p[22..24].copy_from_slice(&s.to_be_bytes());
    p
}

/// An ICMP error from `src` to `dst` quoting `about` (its header and 8 bytes, RFC 792).
pub fn icmp_error(src: u32, dst: u32, kind: u8, code: u8, about: &[u8]) -> Vec<u8> {
    let quote = &about[..about.len().min(28)];
    let mut p = vec![0u8; 28 + quote.len()];
    ip_header(&mut p, 1, src, dst);
    p[20] = kind;
    p[21] = code;
    p[28..].copy_from_slice(quote);
    let s = wire::checksum(&p[20..]);
    p[22..24].copy_from_slice(&s.to_be_bytes());
    p
}

/// Splits a packet into a first fragment of `first` payload bytes and the rest.
pub fn fragments(p: &[u8], first: usize) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(first % 8, 0);
    let mut a = p[..20 + first].to_vec();
    let mut b = p[..20].to_vec();
    b.extend_from_slice(&p[20 + first..]);
    let total = a.len() as u16;
    a[2..4].copy_from_slice(&total.to_be_bytes());
    a[6..8].copy_from_slice(&0x2000u16.to_be_bytes());
    let total = b.len() as u16;
    b[2..4].copy_from_slice(&total.to_be_bytes());
    b[6..8].copy_from_slice(&((first / 8) as u16).to_be_bytes());
    wire::ipv4::fill_checksum(&mut a);
    wire::ipv4::fill_checksum(&mut b);
    (a, b)
}

pub fn src(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[12], p[13], p[14], p[15]])
}
pub fn dst(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[16], p[17], p[18], p[19]])
}
pub fn sport(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[20], p[21]])
}
pub fn dport(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[22], p[23]])
}
pub fn echo_id(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[24], p[25]])
}

/// Asserts every checksum of an unfragmented packet verifies, including those of the
/// packet quoted in an ICMP error (header, and transport when quoted whole).
pub fn assert_checksums(p: &[u8]) {
    assert_eq!(wire::checksum(&p[..20]), 0, "IPv4 header checksum");
    let (s, d, proto) = (wire::ipv4::src(p), wire::ipv4::dst(p), wire::ipv4::proto(p));
    match proto {
        6 | 17 => assert_eq!(wire::checksum4(s, d, proto, &p[20..]), 0, "L4 checksum"),
        1 => {
            assert_eq!(wire::checksum(&p[20..]), 0, "ICMP checksum");
            if wire::icmp4::is_error(p[20]) {
                let q = &p[28..];
                assert_eq!(wire::checksum(&q[..20]), 0, "quoted IPv4 header checksum");
            }
        }
        _ => {}
    }
}
