//! `cargo bench -p benches --bench pipeline`: ns per packet for IPv4 forwarding of 64-byte
//! frames through one worker's whole loop (rx from memory, parse, batched FIB lookup,
//! TTL + checksum, MAC rewrite, tx to a discarding port, counters, quiescent state), with
//! the RIS 2026 IPv4 table loaded and destinations drawn from it.

use std::time::Duration;

use benches::data::{self, Rng};
use benches::pipeline::{frame_to, BenchWorker, TWO_PORTS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::config::StaticRoute;
use ipnet::{IpNet, Ipv4Net};

fn pipeline(c: &mut Criterion) {
    let table: Vec<Ipv4Net> = data::table(data::RIS_V4);
    let gw = "203.0.113.2".parse().expect("addr");
    let routes = table.iter().map(|net| StaticRoute {
        prefix: IpNet::V4(*net),
        via: Some(gw),
        interface: None,
        tunnel: None,
    });
    let mut rng = Rng(7);
    let frames: Vec<Vec<u8>> = data::v4_keys(&table, 8192, &mut rng)
        .into_iter()
        .step_by(2)
        .map(|a| frame_to(a.to_bits()))
        .collect();
    let mut bench = BenchWorker::new(TWO_PORTS, routes, frames);
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
