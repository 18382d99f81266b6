//! The TCP header (RFC 9293): field offsets, flag bits and accessors from the start of
//! the header.

use crate::fields::get16;

pub const MIN_LEN: usize = 20;
pub const SRC_PORT: usize = 0;
pub const DST_PORT: usize = 2;
pub const SEQUENCE: usize = 4;
pub const ACKNOWLEDGEMENT: usize = 8;
pub const DATA_OFFSET: usize = 12;
pub const FLAGS: usize = 13;
pub const WINDOW: usize = 14;
pub const CHECKSUM: usize = 16;

/// Flag bits of the byte at [`FLAGS`].
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[inline(always)]
pub fn src_port(t: &[u8]) -> u16 {
    get16(t, SRC_PORT)
}

#[inline(always)]
pub fn dst_port(t: &[u8]) -> u16 {
    get16(t, DST_PORT)
}

#[inline(always)]
pub fn flags(t: &[u8]) -> u8 {
    t[FLAGS]
}

#[inline(always)]
pub fn checksum(t: &[u8]) -> u16 {
    get16(t, CHECKSUM)
}

/// Header length in bytes, options included.
#[inline(always)]
pub fn header_len(t: &[u8]) -> usize {
    ((t[DATA_OFFSET] >> 4) as usize) * 4
}
