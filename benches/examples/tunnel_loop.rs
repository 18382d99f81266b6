//! The tunnel benchmark's workloads without criterion, for `valgrind --tool=callgrind`
//! (instructions per packet): `cargo build --release -p benches --example tunnel_loop`, then
//! `valgrind --tool=callgrind --toggle-collect='*poll_once*' target/release/examples/tunnel_loop plain|encap|decap`
//! (20 000 bursts of 32 frames).
use benches::tunnels::workers;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "plain".into());
    let mut all = workers();
    let w = match mode.as_str() {
        "plain" => &mut all.plain,
        "encap" => &mut all.encap,
        "decap" => &mut all.decap,
        other => panic!("tunnel_loop: unknown mode {other:?} (plain, encap or decap)"),
    };
    for _ in 0..20_000 {
        w.worker.poll_once();
    }
    w.worker.flush_counters();
    let packets = w.event("forwarded");
    all.assert_all_forwarded();
    // For scripts/instructions: the packets the collected instructions are divided by.
    println!("packets {packets}");
}
