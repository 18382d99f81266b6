//! ICMP and ICMPv6 error messages tern originates, and the per-worker rate limit on them.
//!
//! Rules (RFC 1812 §4.3.2.7, RFC 4443 §2.4): no error about an ICMP error, about a
//! non-first fragment, or about a packet whose source cannot receive one (unspecified,
//! multicast, broadcast). The error quotes as much of the offending packet as fits in 576
//! bytes (IPv4) or the IPv6 minimum MTU of 1280.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use crate::buf::{Frame, Pool};
use crate::wire::{eth, icmp, icmp4, icmp6, ipv4, ipv6};

/// Token bucket: `rate` errors per second, bursts up to `burst`.
pub struct Limiter {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Limiter {
    pub fn new(rate: u32, burst: u32) -> Limiter {
        Limiter {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Whether an IPv4 packet (from its IP header) may be answered with an ICMP error.
pub fn may_answer_v4(ip: &[u8]) -> bool {
    let src = ipv4::src(ip);
    if src.is_unspecified()
        || src.is_broadcast()
        || src.is_multicast()
        || ipv4::is_later_fragment(ip)
    {
        return false;
    }
    if ipv4::proto(ip) == ipv4::PROTO_ICMP {
        let l4 = ipv4::header_len(ip);
        // An unreadable ICMP type is treated as an error: stay silent.
        return ip.get(l4).is_some_and(|&t| !icmp4::is_error(t));
    }
    true
}

/// Whether an IPv6 packet may be answered with an ICMPv6 error.
pub fn may_answer_v6(ip: &[u8]) -> bool {
    let src = ipv6::src(ip);
    if src.is_unspecified() || src.is_multicast() {
        return false;
    }
    if ipv6::next_header(ip) == ipv6::NEXT_ICMP {
        return ip.get(ipv6::LEN).is_some_and(|&t| !icmp6::is_error(t));
    }
    true
}

/// Builds an ICMPv4 error about `ip` (the offending packet from its IP header) from `src`.
/// The Ethernet addresses are left for the routing step.
pub fn error_v4(
    pool: &mut Pool,
    src: Ipv4Addr,
    ip: &[u8],
    kind: u8,
    code: u8,
    rest: [u8; 4],
) -> Option<Frame> {
    const MAX_IP: usize = 576;
    let quoted = ip.len().min(MAX_IP - 20 - 8);
    let total = 20 + 8 + quoted;
    let mut frame = pool.alloc()?;
    let mut bytes = [0u8; eth::LEN + MAX_IP];
    let f = &mut bytes[..eth::LEN + total];
    f[12..14].copy_from_slice(&eth::TYPE_IPV4.to_be_bytes());
    // TOS 0xc0: network control (RFC 791 precedence 6), as Linux marks its ICMP errors.
    ipv4::Header {
        tos: 0xc0,
        total_len: total as u16,
        ..ipv4::Header::new(ipv4::PROTO_ICMP, src, ipv4::src(ip))
    }
    .emit(&mut f[eth::LEN..]);
    let m = &mut f[eth::LEN + 20..];
    icmp::write_error(m, kind, code, rest, &ip[..quoted]);
    icmp::fill_checksum4(m);
    frame.fill(f);
    Some(frame)
}

/// Builds an ICMPv6 error about `ip` from `src`.
pub fn error_v6(
    pool: &mut Pool,
    src: Ipv6Addr,
    ip: &[u8],
    kind: u8,
    code: u8,
    rest: [u8; 4],
) -> Option<Frame> {
    const MAX_IP: usize = ipv6::MIN_MTU;
    let quoted = ip.len().min(MAX_IP - 40 - 8);
    let payload = 8 + quoted;
    let dst = ipv6::src(ip);
    let mut frame = pool.alloc()?;
    let mut bytes = [0u8; eth::LEN + MAX_IP];
    let f = &mut bytes[..eth::LEN + 40 + payload];
    f[12..14].copy_from_slice(&eth::TYPE_IPV6.to_be_bytes());
    ipv6::write(
        &mut f[eth::LEN..],
        payload as u16,
        ipv6::NEXT_ICMP,
        64,
        src,
        dst,
    );
    let m = &mut f[eth::LEN + 40..];
    icmp::write_error(m, kind, code, rest, &ip[..quoted]);
    icmp::fill_checksum6(m, src, dst);
    frame.fill(f);
    Some(frame)
}
