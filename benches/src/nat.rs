//! The NAT benchmark's fixtures, shared by `benches/nat.rs` (criterion) and
//! `examples/nat_loop.rs` (callgrind): a shard with a 32-address pool, inside endpoints
//! numbered 0.., and UDP packets from them to one remote.

use std::sync::Arc;

use nat::{PortMap, Post, Pre, Rules, Shard, Side};

pub const POOL: u32 = 32;
/// 203.0.113.0; the pool starts at .1.
pub const X: u32 = 0xcb00_7100;
/// 198.51.100.7
pub const REMOTE: u32 = 0xc633_6407;

/// A 48-byte UDP packet with valid checksums.
pub fn udp(src: u32, sport: u16, dst: u32, dport: u16) -> Vec<u8> {
    wire::testing::Udp4::new(src, sport, dst, dport)
        .payload(&[0; 20])
        .build()
}

/// Inside endpoint number `i`: 4096 hosts in 10.0.0.0/8 with 256 ports each.
pub fn inside(i: u32) -> (u32, u16) {
    (0x0a00_0000 + (i >> 8), 10_000 + (i & 0xff) as u16)
}

/// The outbound packet of inside endpoint `i`.
pub fn outbound(i: u32) -> Vec<u8> {
    let (a, port) = inside(i);
    udp(a, port, REMOTE, 53)
}

/// A shard for `capacity` sessions masquerading to the pool.
pub fn shard(capacity: usize) -> Shard {
    let mut rules = Rules::new(0x5eed);
    rules.capacity = capacity;
    rules.pool = (1..=POOL).map(|i| X + i).collect();
    let ports = Arc::new(PortMap::new(rules.pool.clone()));
    Shard::new(0, Arc::new(rules), ports)
}

/// A shard holding the sessions of inside endpoints `0..n`, created at time 0.
pub fn full_shard(n: u32) -> Shard {
    let mut s = shard(n as usize + 1024);
    let mut buf = Vec::new();
    for i in 0..n {
        buf.clone_from(&outbound(i));
        assert!(translate(&mut s, &mut buf, 0), "session {i} not created");
    }
    s
}

/// Pre-routing and post-routing of one outbound packet; whether it left translated.
pub fn translate(s: &mut Shard, p: &mut [u8], now: u64) -> bool {
    let pre = s.prerouting(p, Side::Inside, 0, now);
    post(s, p, pre, now)
}

/// Post-routing after pre-routing said `pre`: whether the packet left translated.
fn post(s: &mut Shard, p: &mut [u8], pre: Pre, now: u64) -> bool {
    let h = match pre {
        Pre::Session(h) => Some(h),
        Pre::Pass => None,
        _ => return false,
    };
    matches!(s.postrouting(p, h, Some(X + 1), now), Post::Translated)
}

/// Inside endpoints drawn at random (xorshift, fixed start) from `0..n`.
pub fn random_endpoints(count: usize, n: u32) -> Vec<u32> {
    let mut rng = wire::XorShift64::new(0x2545_f491_4f6c_dd1d);
    (0..count)
        .map(|_| (rng.next_u64() % n as u64) as u32)
        .collect()
}

/// Packets per burst, as the dataplane's workers receive them.
pub const BURST: usize = 32;

/// `translate` over a burst as the dataplane's pre-routing stage runs it: every packet's
/// lookahead first, then every session prefetch, then the translations. `packets` are
/// copied into `bufs` first (the translation rewrites them). Returns how many left
/// translated.
pub fn translate_burst(
    s: &mut Shard,
    packets: &[Vec<u8>],
    bufs: &mut [Vec<u8>],
    now: u64,
) -> usize {
    let n = packets.len().min(bufs.len()).min(BURST);
    let mut ahead = [nat::Lookahead::default(); BURST];
    for ((p, b), l) in packets.iter().zip(bufs.iter_mut()).zip(&mut ahead).take(n) {
        b.clone_from(p);
        *l = s.lookahead(b);
    }
    for l in &ahead[..n] {
        s.prefetch_session(l, Side::Inside, None);
    }
    let mut translated = 0;
    for (b, l) in bufs[..n].iter_mut().zip(&ahead) {
        // Post-routing reuses pre-routing's reading, as the dataplane's does.
        let pre = match s.prerouting_ahead(b, l, Side::Inside, 0, now) {
            Pre::Pass => None,
            Pre::Session(h) => Some(h),
            _ => continue,
        };
        translated += matches!(
            s.postrouting_ahead(b, l, pre, Some(X + 1), now),
            Post::Translated
        ) as usize;
    }
    translated
}
