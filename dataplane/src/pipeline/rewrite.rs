//! Last stage before transmit: the neighbour's MAC as destination, the egress port's as
//! source.

use crate::wire::{eth, Mac};

#[inline(always)]
pub fn macs(frame: &mut [u8], neighbor: &Mac, port: &Mac) {
    eth::set_addrs(frame, neighbor, port);
}
