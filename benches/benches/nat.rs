//! `cargo bench -p benches --bench nat`: the NAT shard on its own, one core.
//! * `snat-established/1M`: pre-routing + post-routing of outbound UDP packets of
//!   established sessions, drawn at random from 1 048 576 sessions in the table (each
//!   iteration copies a 48-byte packet template into the working buffer first, since the
//!   translation rewrites it);
//! * `snat-established/1M-burst32`: the same, in bursts of 32 as the dataplane runs them
//!   (lookahead and session prefetch for the burst, then the translations);
//! * `snat-established/1M-hot1k`: the same table, packets cycling over 1024 of its
//!   sessions (cache-resident): the per-packet work without the memory latency;
//! * `new-session`: first packets of new flows (mapping, external port, both keys, LRU),
//!   into an empty table of 2^17 sessions; `new-session-burst32` the same in bursts;
//! * `bytes-per-session` is printed: the shard's tables over its sessions at 1M.

use benches::nat::{
    full_shard, outbound, random_endpoints, shard, translate, translate_burst, BURST,
};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const SESSIONS: u32 = 1 << 20;

fn bench(c: &mut Criterion) {
    let mut full = full_shard(SESSIONS);
    let sessions = full.sessions().len();
    eprintln!(
        "nat: {sessions} sessions, {} mappings; shard tables {} MiB = {} bytes/session; port map {} MiB",
        full.mappings().len(),
        full.bytes() >> 20,
        full.bytes() / sessions,
        full.ports().bytes() >> 20
    );

    // A random sample of established sessions, visited in that order.
    let packets: Vec<Vec<u8>> = random_endpoints(8192, SESSIONS)
        .into_iter()
        .map(outbound)
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
    let mut bufs = vec![vec![0u8; 48]; BURST];
    g.bench_function("snat-established/1M-burst32", |b| {
        b.iter(|| {
            for burst in packets.chunks(BURST) {
                translate_burst(&mut full, burst, &mut bufs, 1000);
            }
        })
    });

    // The same flows cycling over 1024 sessions: the table's cache and TLB footprint
    // out of the picture, what is left is the work per packet.
    let hot: Vec<Vec<u8>> = (0..8192u32).map(|i| outbound((i * 7919) % 1024)).collect();
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
    let firsts: Vec<Vec<u8>> = (0..NEW).map(outbound).collect();
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
    g.bench_function("new-session-burst32", |b| {
        b.iter_batched(
            || shard(1 << 17),
            |mut s| {
                for burst in firsts.chunks(BURST) {
                    translate_burst(&mut s, burst, &mut bufs, 0);
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
