//! The pipeline benchmark's loop without criterion, for `valgrind --tool=callgrind`
//! (instruction counts per stage): `cargo build --release -p benches --example pipeline_loop`,
//! then `valgrind --tool=callgrind --toggle-collect='*poll_once*' target/release/examples/pipeline_loop`.
//! `pipeline_loop BURSTS capture` runs it with a capture of every received frame on, the
//! queue drained between polls as a ctl reader would (outside the collected function).
use benches::pipeline::ris_forwarding_worker;
use dataplane::capture::{Filter, Session, RX};

fn main() {
    let mut args = std::env::args().skip(1);
    let bursts: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let capture = args.next().is_some_and(|a| a == "capture");
    let mut bench = ris_forwarding_worker();
    let session = capture.then(|| {
        let s = Session::new(0, RX, Filter::All, None);
        bench.captures.start(s).expect("capture")
    });
    for _ in 0..bursts {
        bench.worker.poll_once();
        if let Some(s) = &session {
            while s.pop().is_some() {}
        }
    }
    bench.assert_no_drops("pipeline_loop");
    if let Some(s) = &session {
        let dropped = s.dropped.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(dropped, 0, "pipeline_loop: captures dropped");
        println!(
            "captured {}",
            s.captured.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    // For scripts/instructions: the packets the collected instructions are divided by.
    println!("packets {}", bench.event("forwarded"));
}
