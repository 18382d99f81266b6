//! `cargo bench -p benches --bench tunnels`: the cost of a tunnel on the whole worker
//! loop, against plain forwarding in the same run. Three workers share one config and the
//! RIS 2026 IPv4 table, with destinations drawn from it:
//! * `plain`: 64-byte IPv4 frames forwarded to a neighbour;
//! * `gre-encap`: the same frames, every route into a keyed GRE tunnel (encapsulate in
//!   the headroom, second FIB lookup for the remote endpoint);
//! * `gre-decap`: the same frames arriving GRE-encapsulated (key) from a tunnel remote,
//!   decapsulated and forwarded to the neighbour.

use std::net::Ipv4Addr;
use std::time::Duration;

use benches::data::{self, Rng};
use benches::pipeline::{frame_to, ipv4_frame, BenchWorker, TWO_PORTS};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::config::StaticRoute;
use dataplane::wire::{eth, ipv4};
use ipnet::{IpNet, Ipv4Net};

/// Appended to [`TWO_PORTS`].
const TUNNELS: &str = r#"
[[tunnel]]
name = "out-gre"
kind = "gre"
local = "203.0.113.1"
remote = "203.0.113.2"
key = 7
[[tunnel]]
name = "in-gre"
kind = "gre"
local = "192.0.2.1"
remote = "192.0.2.5"
key = 9
"#;

/// `frame` (Ethernet + IPv4) wrapped in IPv4/GRE with key 9 from the `in-gre` remote.
fn gre_wrapped(frame: &[u8]) -> Vec<u8> {
    let inner = &frame[eth::LEN..eth::LEN + ipv4::total_len(&frame[eth::LEN..])];
    let mut gre = vec![0x20, 0, 0x08, 0, 0, 0, 0, 9];
    gre.extend_from_slice(inner);
    let (src, dst) = (Ipv4Addr::new(192, 0, 2, 5), Ipv4Addr::new(192, 0, 2, 1));
    ipv4_frame(tunnels::PROTO_GRE, src, dst, ipv4::FLAG_DF, &gre)
}

fn tunnels(c: &mut Criterion) {
    let config = format!("{TWO_PORTS}{TUNNELS}");
    let table: Vec<Ipv4Net> = data::table(data::RIS_V4);
    let gw = "203.0.113.2".parse().expect("addr");
    let via_neighbor = || {
        table.iter().map(move |net| StaticRoute {
            prefix: IpNet::V4(*net),
            via: Some(gw),
            interface: None,
            tunnel: None,
        })
    };
    let into_tunnel = table.iter().map(|net| StaticRoute {
        prefix: IpNet::V4(*net),
        via: None,
        interface: None,
        tunnel: Some(0),
    });
    let mut rng = Rng(7);
    let plain: Vec<Vec<u8>> = data::v4_keys(&table, 8192, &mut rng)
        .into_iter()
        .step_by(2)
        .map(|a| frame_to(a.to_bits()))
        .collect();
    let wrapped: Vec<Vec<u8>> = plain.iter().map(|f| gre_wrapped(f)).collect();

    let mut forward = BenchWorker::new(&config, via_neighbor(), plain.clone());
    let mut encap = BenchWorker::new(&config, into_tunnel, plain);
    let mut decap = BenchWorker::new(&config, via_neighbor(), wrapped);

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
        for (i, w) in [&mut forward, &mut encap, &mut decap]
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

    forward.assert_no_drops("plain");
    encap.assert_no_drops("gre-encap");
    decap.assert_no_drops("gre-decap");
    assert_eq!(encap.event("tunnel_encapsulated"), encap.event("forwarded"));
    assert_eq!(decap.event("tunnel_decapsulated"), decap.event("forwarded"));
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = tunnels
}
criterion_main!(benches);
