//! Stage 2: one batched FIB lookup per family for the whole burst.

use super::{Class, Meta};

/// Bursts are at most this long (the worker caps them).
const MAX: usize = 256;

/// The stage's working space, kept by the worker so a burst does not zero kilobytes of
/// stack arrays it only partly uses. Fixed arrays, filled by index: cheaper per packet
/// than `Vec` pushes (no capacity check, no length store).
pub struct Scratch {
    keys4: [u32; MAX],
    at4: [u8; MAX],
    keys6: [u128; MAX],
    at6: [u8; MAX],
    out: [u32; MAX],
}

impl Default for Scratch {
    fn default() -> Scratch {
        Scratch {
            keys4: [0; MAX],
            at4: [0; MAX],
            keys6: [0; MAX],
            at6: [0; MAX],
            out: [0; MAX],
        }
    }
}

pub fn burst(meta: &mut [Meta], fib4: &lpm::Fib4Reader, fib6: &lpm::Fib6Reader, s: &mut Scratch) {
    let (mut n4, mut n6) = (0, 0);
    for (i, m) in meta.iter().enumerate().take(MAX) {
        match m.class {
            Class::V4 { dst } => {
                s.keys4[n4] = dst;
                s.at4[n4] = i as u8;
                n4 += 1;
            }
            Class::V6 { dst } => {
                s.keys6[n6] = dst;
                s.at6[n6] = i as u8;
                n6 += 1;
            }
            _ => {}
        }
    }
    if n4 > 0 {
        fib4.lookup_keys(&s.keys4[..n4], &mut s.out[..n4]);
        for (&i, &nh) in s.at4[..n4].iter().zip(&s.out[..n4]) {
            meta[i as usize].next_hop = nh;
        }
    }
    if n6 > 0 {
        fib6.lookup_keys(&s.keys6[..n6], &mut s.out[..n6]);
        for (&i, &nh) in s.at6[..n6].iter().zip(&s.out[..n6]) {
            meta[i as usize].next_hop = nh;
        }
    }
}
