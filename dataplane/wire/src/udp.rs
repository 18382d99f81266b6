//! The UDP header (RFC 768): field offsets and accessors from the start of the header.

use crate::fields::{get16, put16};

pub const LEN: usize = 8;
pub const SRC_PORT: usize = 0;
pub const DST_PORT: usize = 2;
pub const LENGTH: usize = 4;
pub const CHECKSUM: usize = 6;

#[inline(always)]
pub fn src_port(u: &[u8]) -> u16 {
    get16(u, SRC_PORT)
}

#[inline(always)]
pub fn dst_port(u: &[u8]) -> u16 {
    get16(u, DST_PORT)
}

#[inline(always)]
pub fn length(u: &[u8]) -> u16 {
    get16(u, LENGTH)
}

#[inline(always)]
pub fn checksum(u: &[u8]) -> u16 {
    get16(u, CHECKSUM)
}

/// Writes ports and length, and a zero checksum ("none", which IPv4 allows; see
/// [`crate::checksum4`] to fill one in).
pub fn write(u: &mut [u8], src_port: u16, dst_port: u16, length: u16) {
    put16(u, SRC_PORT, src_port);
    put16(u, DST_PORT, dst_port);
    put16(u, LENGTH, length);
    put16(u, CHECKSUM, 0);
}

/// A computed checksum as UDP sends it: a computed zero goes out as all ones, since zero
/// in the field means "no checksum" (RFC 768).
#[inline(always)]
pub fn sendable_checksum(sum: u16) -> u16 {
    if sum == 0 {
        0xffff
    } else {
        sum
    }
}
