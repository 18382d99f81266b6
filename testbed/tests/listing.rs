//! `show routes` with a full table, as an operator runs it: the listing streams, tern's
//! memory stays put, and the control plane keeps answering, resolving and forwarding
//! while it runs.

use std::io::Write;
use std::time::{Duration, Instant};

use testbed::*;

const ROUTES: u32 = 1_000_000;

#[test]
fn a_million_route_listing_streams_while_tern_answers_resolves_and_forwards() {
    // A million /24s from 1.0.0.0 up, all via B.
    let dir = std::env::temp_dir().join(unique("tern-listing-"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("routes.txt");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&file).expect("routes file"));
    for i in 0..ROUTES {
        let a = 0x0100_0000u32 + (i << 8);
        writeln!(w, "{}/24", std::net::Ipv4Addr::from_bits(a)).expect("write");
    }
    drop(w);
    let extra = format!("[[route]]\nfile = \"{}\"\nvia = \"{B4}\"\n", file.display());
    let t = TwoHosts::new(&extra, 1500);
    eventually(Duration::from_secs(60), "the table loaded", || {
        t.tern.ctl(&["show", "fib"])["ipv4_by_source"]["static"].as_u64() == Some(ROUTES as u64)
    });
    let pid = t.tern.pid().expect("tern runs");
    // Settle: the load's transient allocations are gone.
    std::thread::sleep(Duration::from_secs(2));
    let before = rss_kib(pid);

    let pings =
        t.a.spawn(&["ping", "-n", "-q", "-i", "0.05", "-c", "160", B4]);
    let listing = dir.join("routes.out");
    let started = Instant::now();
    let mut lister = std::process::Command::new(tern_binary())
        .args(["ctl", "--socket"])
        .arg(&t.tern.socket)
        .args(["show", "routes"])
        .stdout(std::fs::File::create(&listing).expect("out"))
        .spawn()
        .expect("tern ctl");
    let mut counters_ms = Vec::new();
    let mut peak = before;
    let mut resolved = false;
    let listed = loop {
        if let Some(status) = lister.try_wait().expect("wait") {
            break (status, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the listing hangs"
        );
        let t0 = Instant::now();
        t.tern.ctl(&["show", "counters"]);
        counters_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        peak = peak.max(rss_kib(pid));
        if !resolved && started.elapsed() > Duration::from_millis(500) {
            // A new neighbour during the listing: B gets a second address, A pings it.
            t.b.ok(&["ip", "addr", "add", "203.0.113.3/24", "dev", &t.tap_b]);
            let out = ping(&t.a, &["-c", "1", "-W", "3", "203.0.113.3"]);
            assert!(
                out.contains("1 received"),
                "resolved during the listing: {out}"
            );
            resolved = true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, took) = listed;
    assert!(status.success(), "tern ctl show routes: {status}");
    assert!(resolved, "the listing ended before the neighbour test ran");
    let text = std::fs::read_to_string(&listing).expect("listing");
    let statics: Vec<&str> = text.lines().filter(|l| l.contains(" static ")).collect();
    let unique: std::collections::HashSet<&str> = statics
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(statics.len(), ROUTES as usize, "every static route listed");
    assert_eq!(unique.len(), ROUTES as usize, "each once");
    let pinged = pings.wait_with_output().expect("ping");
    let summary = String::from_utf8_lossy(&pinged.stdout).to_string();
    assert!(summary.contains(" 0% packet loss"), "{summary}");

    counters_ms.sort_by(f64::total_cmp);
    let median = counters_ms[counters_ms.len() / 2];
    let worst = counters_ms[counters_ms.len() - 1];
    println!(
        "listing {} routes: {:.1} s; show counters median {median:.1} ms, worst {worst:.1} ms \
         ({} asks); RSS {} MiB before, peak +{} KiB",
        ROUTES,
        took.as_secs_f64(),
        counters_ms.len(),
        before / 1024,
        peak - before
    );
    assert!(took < Duration::from_secs(40), "listing took {took:?}");
    assert!(
        median < 100.0 && worst < 1000.0,
        "show counters: {counters_ms:?} ms"
    );
    assert!(peak - before <= 64 * 1024, "RSS rose {} KiB", peak - before);
    std::thread::sleep(Duration::from_secs(30));
    let after = rss_kib(pid);
    assert!(
        after <= before + 16 * 1024,
        "RSS 30 s later {after} KiB, before {before} KiB"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
