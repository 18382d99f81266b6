//! `cargo bench -p benches --bench tunnels`: the cost of a tunnel on the whole worker
//! loop, against plain forwarding in the same run. Three workers share one config and the
//! RIS 2026 IPv4 table, with destinations drawn from it:
//! * `plain`: 64-byte IPv4 frames forwarded to a neighbour;
//! * `gre-encap`: the same frames, every route into a keyed GRE tunnel (encapsulate in
//!   the headroom, second FIB lookup for the remote endpoint);
//! * `gre-decap`: the same frames arriving GRE-encapsulated (key) from a tunnel remote,
//!   decapsulated and forwarded to the neighbour.

use std::time::Duration;

use benches::tunnels::{workers, TunnelWorkers};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn tunnels(c: &mut Criterion) {
    let mut all = workers();
    let TunnelWorkers {
        plain: forward,
        encap,
        decap,
    } = &mut all;
    let mut group = c.benchmark_group("tunnels");
    group.throughput(Throughput::Elements(32));
    group.bench_function("plain-forward-64B", |b| {
        b.iter(|| forward.worker.poll_once())
    });
    group.bench_function("gre-encap-64B", |b| b.iter(|| encap.worker.poll_once()));
    group.bench_function("gre-decap-64B", |b| b.iter(|| decap.worker.poll_once()));
    group.finish();

    // Criterion runs the three one after the other, and this machine's speed drifts between
    // them; the ratios are taken here, interleaved: 21 rounds of each, medians.
    let mut samples = [Vec::new(), Vec::new(), Vec::new()];
    for _ in 0..21 {
        for (i, w) in [&mut *forward, &mut *encap, &mut *decap]
            .into_iter()
            .enumerate()
        {
            let start = std::time::Instant::now();
            for _ in 0..20_000 {
                w.worker.poll_once();
            }
            samples[i].push(start.elapsed().as_nanos() as f64 / (20_000.0 * 32.0));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [p, e, d] = samples.map(|mut v| median(&mut v));
    println!(
        "interleaved medians: plain {p:.1} ns/packet, gre-encap {e:.1} ns ({:.2}x), gre-decap {d:.1} ns ({:.2}x)",
        e / p,
        d / p
    );

    all.assert_all_forwarded();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = tunnels
}
criterion_main!(benches);
