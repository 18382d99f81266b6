//! `tern-demo`: a client — tern — server topology in network namespaces, tern on its
//! embedded default addressing, pings (IPv4, IPv6) and a TCP transfer through it, then
//! tern's counters. Everything is removed at the end, also on failure.

use std::time::Instant;

use testbed::*;

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("tern-demo needs root (network namespaces and TAP devices)");
        std::process::exit(1);
    }
    println!("building client — tern — server (namespaces, TAP ports, documentation addresses)");
    let t = TwoHosts::new("", 1500);
    println!("  client {A4} / {A6}  ── tern ──  server {B4} / {B6}\n");

    for (what, args) in [
        ("IPv4", vec!["ping", "-n", "-c", "3", "-i", "0.2", B4]),
        ("IPv6", vec!["ping", "-n", "-6", "-c", "3", "-i", "0.2", B6]),
    ] {
        let out = t.a.ok(&args);
        let summary = out
            .lines()
            .filter(|l| l.contains("transmitted") || l.contains("rtt"))
            .collect::<Vec<_>>()
            .join("\n  ");
        println!("ping {what} client → server:\n  {summary}");
    }

    let mut server = t.b.spawn(&["iperf3", "-s", "-1", "-B", B4]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let started = Instant::now();
    let out = t.a.ok(&["iperf3", "-c", B4, "-n", "50M", "-f", "m"]);
    let line = out
        .lines()
        .rfind(|l| l.contains("receiver"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!(
        "\nTCP 50 MB client → server in {:.1?}:\n  {line}",
        started.elapsed()
    );
    let _ = server.wait();

    println!("\n$ tern ctl show routes");
    print_table(&t.tern.ctl(&["show", "routes"]));
    println!("\n$ tern ctl show counters");
    let c = t.tern.ctl(&["show", "counters"]);
    for section in ["interfaces", "events", "drops", "control"] {
        let nonzero: Vec<String> = c[section]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.as_u64() != Some(0))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "  {section}: {}",
            if nonzero.is_empty() {
                "none".into()
            } else {
                nonzero.join(" ")
            }
        );
    }
    println!("\ncleaning up");
}

fn print_table(v: &serde_json::Value) {
    for r in v["routes"].as_array().into_iter().flatten() {
        println!(
            "  {:<28} {:<10} {}",
            r["prefix"].as_str().unwrap_or(""),
            r["source"].as_str().unwrap_or(""),
            r["next_hop"]
        );
    }
}
