//! TTL / hop limit: decrement with an incremental checksum update (RFC 1624), or report
//! that the packet expired here.

use crate::wire::{eth, ipv4, ipv6};

/// Decrements the IPv4 TTL in place; false if it was ≤ 1 (an ICMP Time Exceeded is due).
#[inline]
pub fn decrement_v4(frame: &mut [u8]) -> bool {
    let h = &mut frame[eth::LEN..];
    if ipv4::ttl(h) <= 1 {
        return false;
    }
    ipv4::decrement_ttl(h);
    true
}

/// Decrements the IPv6 hop limit (no header checksum in IPv6); false if it was ≤ 1.
#[inline]
pub fn decrement_v6(frame: &mut [u8]) -> bool {
    let h = &mut frame[eth::LEN..];
    if ipv6::hop_limit(h) <= 1 {
        return false;
    }
    h[7] -= 1;
    true
}
