//! `cargo bench -p benches --bench pipeline`: ns per packet for IPv4 forwarding of 64-byte
//! frames through one worker's whole loop (rx from memory, parse, batched FIB lookup,
//! TTL + checksum, MAC rewrite, tx to a discarding port, counters, quiescent state), with
//! the RIS 2026 IPv4 table loaded and destinations drawn from it.

use std::time::Duration;

use benches::pipeline::ris_forwarding_worker;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn pipeline(c: &mut Criterion) {
    let mut bench = ris_forwarding_worker();
    let worker = &mut bench.worker;
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(32));
    group.bench_function("ipv4-forward-64B-burst32-ris-table", |b| {
        b.iter(|| worker.poll_once())
    });
    group.finish();
    bench.assert_no_drops("ipv4 forwarding");
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = pipeline
}
criterion_main!(benches);
