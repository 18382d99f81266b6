//! `cargo bench -p benches --bench nat`: the NAT shard on its own, one core.
//! * `snat-established/1M`: pre-routing + post-routing of outbound UDP packets of
//!   established sessions, drawn at random from 1 048 576 sessions in the table (each
//!   iteration copies a 48-byte packet template into the working buffer first, since the
//!   translation rewrites it);
//! * `snat-established/1M-hot1k`: the same table, packets cycling over 1024 of its
//!   sessions (cache-resident): the per-packet work without the memory latency;
//! * `new-session`: first packets of new flows (mapping, external port, both keys, LRU),
//!   into an empty table of 2^17 sessions;
//! * `bytes-per-session` is printed: the shard's tables over its sessions at 1M.

use std::net::Ipv4Addr;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use nat::{PortMap, Post, Pre, Rules, Shard, Side};

const SESSIONS: u32 = 1 << 20;
const POOL: u32 = 32;
const X: u32 = 0xcb00_7100; // 203.0.113.0, the pool starts at .1

fn udp(src: u32, sport: u16, dst: u32, dport: u16) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    let total = p.len() as u16;
    wire::ipv4::write(
        &mut p,
        0,
        total,
        1,
        0,
        64,
        17,
        Ipv4Addr::from(src),
        Ipv4Addr::from(dst),
    );
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&dport.to_be_bytes());
    p[24..26].copy_from_slice(&28u16.to_be_bytes());
    let sum = wire::checksum4(src.into(), dst.into(), 17, &p[20..]);
    p[26..28].copy_from_slice(&sum.to_be_bytes());
    p
}

/// Inside endpoint number `i`: 4096 hosts in 10.0.0.0/8 with 256 ports each.
fn inside(i: u32) -> (u32, u16) {
    (0x0a00_0000 + (i >> 8), 10_000 + (i & 0xff) as u16)
}

const REMOTE: u32 = 0xc633_6407; // 198.51.100.7

fn shard(capacity: usize) -> Shard {
    let mut rules = Rules::new(0x5eed);
    rules.capacity = capacity;
    rules.pool = (1..=POOL).map(|i| X + i).collect();
    let ports = Arc::new(PortMap::new(rules.pool.clone()));
    Shard::new(0, Arc::new(rules), ports)
}

fn translate(s: &mut Shard, p: &mut [u8], now: u64) -> bool {
    let h = match s.prerouting(p, Side::Inside, 0, now) {
        Pre::Session(h) => Some(h),
        Pre::Pass => None,
        _ => return false,
    };
    matches!(s.postrouting(p, h, Some(X + 1), now), Post::Translated)
}

fn bench(c: &mut Criterion) {
    let mut full = shard(SESSIONS as usize + 1024);
    for i in 0..SESSIONS {
        let (a, port) = inside(i);
        let mut p = udp(a, port, REMOTE, 53);
        assert!(translate(&mut full, &mut p, 0), "session {i} not created");
    }
    let sessions = full.sessions().len();
    eprintln!(
        "nat: {sessions} sessions, {} mappings; shard tables {} MiB = {} bytes/session; port map {} MiB",
        full.mappings().len(),
        full.bytes() >> 20,
        full.bytes() / sessions,
        full.ports().bytes() >> 20
    );

    // A random sample of established sessions, visited in that order.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let packets: Vec<Vec<u8>> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (a, port) = inside((x % SESSIONS as u64) as u32);
            udp(a, port, REMOTE, 53)
        })
        .collect();
    let mut g = c.benchmark_group("nat");
    g.throughput(Throughput::Elements(packets.len() as u64));
    let mut buf = vec![0u8; 48];
    g.bench_function("snat-established/1M", |b| {
        b.iter(|| {
            for p in &packets {
                buf.copy_from_slice(p);
                translate(&mut full, &mut buf, 1000);
            }
        })
    });

    // The same flows cycling over 1024 sessions: the table's cache and TLB footprint
    // out of the picture, what is left is the work per packet.
    let hot: Vec<Vec<u8>> = (0..8192u32)
        .map(|i| {
            let (a, port) = inside((i * 7919) % 1024);
            udp(a, port, REMOTE, 53)
        })
        .collect();
    g.bench_function("snat-established/1M-hot1k", |b| {
        b.iter(|| {
            for p in &hot {
                buf.copy_from_slice(p);
                translate(&mut full, &mut buf, 1000);
            }
        })
    });

    const NEW: u32 = 100_000;
    g.throughput(Throughput::Elements(NEW as u64));
    let firsts: Vec<Vec<u8>> = (0..NEW)
        .map(|i| {
            let (a, port) = inside(i);
            udp(a, port, REMOTE, 53)
        })
        .collect();
    g.bench_function("new-session", |b| {
        b.iter_batched(
            || shard(1 << 17),
            |mut s| {
                let mut buf = vec![0u8; 48];
                for p in &firsts {
                    buf.copy_from_slice(p);
                    translate(&mut s, &mut buf, 0);
                }
                s
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
