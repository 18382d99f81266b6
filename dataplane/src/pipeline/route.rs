//! Stage 2: one batched FIB lookup per family for the whole burst.

use super::{Class, Meta};

pub fn burst(meta: &mut [Meta], fib4: &lpm::Fib4Reader, fib6: &lpm::Fib6Reader) {
    const MAX: usize = 256;
    let mut keys4 = [0u32; MAX];
    let mut at4 = [0u8; MAX];
    let mut keys6 = [0u128; MAX];
    let mut at6 = [0u8; MAX];
    let (mut n4, mut n6) = (0, 0);
    for (i, m) in meta.iter().enumerate().take(MAX) {
        match m.class {
            Class::V4 { dst } => {
                keys4[n4] = dst;
                at4[n4] = i as u8;
                n4 += 1;
            }
            Class::V6 { dst } => {
                keys6[n6] = dst;
                at6[n6] = i as u8;
                n6 += 1;
            }
            _ => {}
        }
    }
    let mut out = [0u32; MAX];
    if n4 > 0 {
        fib4.lookup_keys(&keys4[..n4], &mut out[..n4]);
        for (&i, &nh) in at4[..n4].iter().zip(&out[..n4]) {
            meta[i as usize].next_hop = nh;
        }
    }
    if n6 > 0 {
        fib6.lookup_keys(&keys6[..n6], &mut out[..n6]);
        for (&i, &nh) in at6[..n6].iter().zip(&out[..n6]) {
            meta[i as usize].next_hop = nh;
        }
    }
}
