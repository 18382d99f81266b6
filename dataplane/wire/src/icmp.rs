//! The header ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) share: type, code, checksum, then
//! four bytes whose meaning depends on the type (an echo's identifier and sequence
//! number, a "packet too big" MTU). Type and code numbers are in `icmp4` and `icmp6`.

use crate::fields::{get16, put16};

/// Type, code, checksum and the four type-specific bytes.
pub const LEN: usize = 8;
pub const TYPE: usize = 0;
pub const CODE: usize = 1;
pub const CHECKSUM: usize = 2;
/// An echo request's or reply's identifier.
pub const ECHO_IDENT: usize = 4;
pub const ECHO_SEQUENCE: usize = 6;

#[inline(always)]
pub fn kind(m: &[u8]) -> u8 {
    m[TYPE]
}

#[inline(always)]
pub fn echo_ident(m: &[u8]) -> u16 {
    get16(m, ECHO_IDENT)
}

#[inline(always)]
pub fn set_echo_ident(m: &mut [u8], ident: u16) {
    put16(m, ECHO_IDENT, ident);
}

/// Writes `sum` (computed over the message with this field zero) into the checksum field.
#[inline(always)]
pub fn set_checksum(m: &mut [u8], sum: u16) {
    put16(m, CHECKSUM, sum);
}

/// Recomputes an ICMPv4 message's checksum (the whole message, no pseudo-header).
pub fn fill_checksum4(m: &mut [u8]) {
    put16(m, CHECKSUM, 0);
    let sum = crate::checksum(m);
    put16(m, CHECKSUM, sum);
}

/// Recomputes an ICMPv6 message's checksum (the message and the IPv6 pseudo-header).
pub fn fill_checksum6(m: &mut [u8], src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr) {
    put16(m, CHECKSUM, 0);
    let sum = crate::checksum6(src, dst, crate::ipv6::NEXT_ICMP, m);
    put16(m, CHECKSUM, sum);
}

/// Writes an error message into `m`: type, code, the four type-specific bytes (`rest`:
/// unused, an MTU, a pointer), then `quote` (the start of the offending packet). The
/// checksum is left zero for [`fill_checksum4`] or [`fill_checksum6`].
pub fn write_error(m: &mut [u8], kind: u8, code: u8, rest: [u8; 4], quote: &[u8]) {
    m[TYPE] = kind;
    m[CODE] = code;
    put16(m, CHECKSUM, 0);
    m[ECHO_IDENT..LEN].copy_from_slice(&rest);
    m[LEN..LEN + quote.len()].copy_from_slice(quote);
}
