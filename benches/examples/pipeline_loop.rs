//! The pipeline benchmark's loop without criterion, for `valgrind --tool=callgrind`
//! (instruction counts per stage): `cargo build --release -p benches --example pipeline_loop`,
//! then `valgrind --tool=callgrind --toggle-collect='*poll_once*' target/release/examples/pipeline_loop`.
use benches::data::{self, Rng};
use benches::pipeline::{frame_to, BenchWorker, TWO_PORTS};
use dataplane::config::StaticRoute;
use ipnet::{IpNet, Ipv4Net};

fn main() {
    let bursts: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
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
    for _ in 0..bursts {
        bench.worker.poll_once();
    }
    bench.assert_no_drops("pipeline_loop");
}
