//! Stage 2: one batched FIB lookup per family for the whole burst.

use super::{Class, Meta};

/// The stage's working space, kept by the worker so a burst does not zero kilobytes of
/// stack arrays it only partly uses.
#[derive(Default)]
pub struct Scratch {
    keys4: Vec<u32>,
    at4: Vec<u8>,
    keys6: Vec<u128>,
    at6: Vec<u8>,
    out: Vec<u32>,
}

/// Bursts are at most this long (the worker caps them).
const MAX: usize = 256;

pub fn burst(meta: &mut [Meta], fib4: &lpm::Fib4Reader, fib6: &lpm::Fib6Reader, s: &mut Scratch) {
    s.keys4.clear();
    s.at4.clear();
    s.keys6.clear();
    s.at6.clear();
    for (i, m) in meta.iter().enumerate().take(MAX) {
        match m.class {
            Class::V4 { dst } => {
                s.keys4.push(dst);
                s.at4.push(i as u8);
            }
            Class::V6 { dst } => {
                s.keys6.push(dst);
                s.at6.push(i as u8);
            }
            _ => {}
        }
    }
    if !s.keys4.is_empty() {
        s.out.resize(s.keys4.len(), 0);
        fib4.lookup_keys(&s.keys4, &mut s.out);
        for (&i, &nh) in s.at4.iter().zip(&s.out) {
            meta[i as usize].next_hop = nh;
        }
    }
    if !s.keys6.is_empty() {
        s.out.resize(s.keys6.len(), 0);
        fib6.lookup_keys(&s.keys6, &mut s.out);
        for (&i, &nh) in s.at6.iter().zip(&s.out) {
            meta[i as usize].next_hop = nh;
        }
    }
}
