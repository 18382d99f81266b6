//! The pipeline benchmark's loop without criterion, for `valgrind --tool=callgrind`
//! (instruction counts per stage): `cargo build --release -p benches --example pipeline_loop`,
//! then `valgrind --tool=callgrind --toggle-collect='*poll_once*' target/release/examples/pipeline_loop`.
use benches::pipeline::ris_forwarding_worker;

fn main() {
    let bursts: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut bench = ris_forwarding_worker();
    for _ in 0..bursts {
        bench.worker.poll_once();
    }
    bench.assert_no_drops("pipeline_loop");
    // For scripts/instructions: the packets the collected instructions are divided by.
    println!("packets {}", bench.event("forwarded"));
}
