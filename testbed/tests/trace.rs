//! `tern ctl trace add N [PORT]` / `show trace`: a NATed, a tunnelled, a dropped and a
//! locally answered packet, each followed stage by stage.

use serde_json::Value;
use testbed::*;

/// The steps of the traced packets, as (stage, what) per packet.
fn traced(tern: &Tern) -> Vec<Vec<(String, String)>> {
    let v = tern.ctl(&["show", "trace"]);
    v["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            p["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .map(|s| (str_of(&s["stage"]), str_of(&s["what"])))
                .collect()
        })
        .collect()
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// The traced packet whose `rx` step contains `what` (a host's other traffic, IPv6
/// neighbour discovery say, may be traced too: exactly one must match).
fn packet_with(tern: &Tern, what: &str) -> Vec<(String, String)> {
    let packets = traced(tern);
    let mut found: Vec<_> = packets
        .into_iter()
        .filter(|p| p.iter().any(|(s, w)| s == "rx" && w.contains(what)))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one traced packet with {what:?}: {found:#?}"
    );
    found.remove(0)
}

/// The one step of `stage` in `steps` (panics, showing them, if there is not exactly one).
fn step<'a>(steps: &'a [(String, String)], stage: &str) -> &'a str {
    let found: Vec<&String> = steps
        .iter()
        .filter(|(s, _)| s == stage)
        .map(|(_, w)| w)
        .collect();
    assert_eq!(found.len(), 1, "one {stage} step in {steps:#?}");
    found[0]
}

#[test]
fn a_nated_a_dropped_and_a_locally_answered_packet_are_traced_stage_by_stage() {
    let t = TwoHosts::new(
        "[nat]\ninside = [\"{tap_a}\"]\noutside = [\"{tap_b}\"]\n",
        1500,
    );
    // Warm the neighbours so the trace shows a resolved next hop.
    let out = ping(&t.a, &["-c", "1", "-W", "2", B4]);
    assert!(out.contains("1 received"), "{out}");
    t.tern.ctl(&["trace", "clear"]);

    // NATed: A's echo request leaves B's port from tern's outside address.
    t.tern.ctl(&["trace", "add", "10", &t.tap_a]);
    let out = ping(&t.a, &["-c", "1", "-W", "2", B4]);
    assert!(out.contains("1 received"), "{out}");
    let p = &packet_with(&t.tern, &format!("IPv4 {A4} > {B4} ttl 64 icmp type 8"));
    assert!(
        step(p, "rx").contains(&format!("IPv4 {A4} > {B4} ttl 64 icmp type 8 echo request")),
        "{p:#?}"
    );
    assert_eq!(step(p, "parse"), format!("IPv4 to {B4}"));
    assert_eq!(step(p, "nat"), "no session: post-routing decides", "{p:#?}");
    assert!(step(p, "fib").contains(": neighbor "), "{p:#?}");
    assert!(
        step(p, "fib").ends_with(&format!("on {}", t.tap_b)),
        "{p:#?}"
    );
    let tx = step(p, "tx");
    assert!(
        tx.starts_with(&format!("{}: ", t.tap_b))
            && tx.contains(&format!("IPv4 {TERN_B4} > {B4} ttl 63")),
        "translated on the way out: {p:#?}"
    );

    // Dropped: TTL 1 expires here; the drop reason, and the ICMP error back to A.
    t.tern.ctl(&["trace", "clear"]);
    t.tern.ctl(&["trace", "add", "10"]);
    let _ = ping(&t.a, &["-c", "1", "-t", "1", "-W", "2", B4]);
    let p = &packet_with(&t.tern, &format!("IPv4 {A4} > {B4} ttl 1 icmp type 8"));
    assert_eq!(step(p, "drop"), "ttl_exceeded", "{p:#?}");
    let tx = step(p, "tx");
    assert!(
        tx.contains(&format!("IPv4 {TERN_A4} > {A4}")) && tx.contains("time exceeded"),
        "time exceeded to A: {p:#?}"
    );

    // Locally answered: a ping of tern's own address.
    t.tern.ctl(&["trace", "clear"]);
    t.tern.ctl(&["trace", "add", "10", &t.tap_a]);
    let out = ping(&t.a, &["-c", "1", "-W", "2", TERN_A4]);
    assert!(out.contains("1 received"), "{out}");
    let p = &packet_with(
        &t.tern,
        &format!("IPv4 {A4} > {TERN_A4} ttl 64 icmp type 8"),
    );
    assert!(
        step(p, "fib").contains("local: one of tern's addresses"),
        "{p:#?}"
    );
    assert!(
        step(p, "tx").contains(&format!(
            "IPv4 {TERN_A4} > {A4} ttl 64 icmp type 0 echo reply"
        )),
        "{p:#?}"
    );

    // The human form: one block per packet, a line per stage.
    let human = std::process::Command::new(tern_binary())
        .args(["ctl", "--socket"])
        .arg(&t.tern.socket)
        .args(["show", "trace"])
        .output()
        .expect("tern ctl show trace");
    let text = String::from_utf8_lossy(&human.stdout);
    eprintln!("{text}");
    assert!(text.starts_with("Packet "), "{text}");
    assert!(text.contains(" UTC\n  rx       "), "{text}");
    assert!(text.contains("\n  fib      next hop "), "{text}");
    assert!(text.ends_with(" packets still to trace\n"), "{text}");
    // Bad requests name what is wrong.
    for (words, reason) in [
        (vec!["trace", "add", "many"], "not a number"),
        (vec!["trace", "add", "5", "eth9"], "no port"),
        (vec!["trace", "add", "0"], "1 to"),
    ] {
        let e = t.tern.try_ctl(&words).expect_err("refused");
        assert!(e.contains(reason), "{words:?}: {e}");
    }
}

#[test]
fn a_tunnelled_packet_is_traced_into_its_tunnel_and_out_of_it() {
    let s = TunnelSites::new();
    s.route_via("grek", false);
    let out = ping(&s.a, &["-c", "1", "-W", "3", B4]);
    assert!(out.contains("1 received"), "{out}");
    s.tern1.ctl(&["trace", "add", "10", &s.tap_a]);
    s.tern2.ctl(&["trace", "add", "10", &s.w2]);
    let out = ping(&s.a, &["-c", "1", "-W", "3", B4]);
    assert!(out.contains("1 received"), "{out}");
    // tern1: into tunnel grek, out of the WAN port as GRE to tern2.
    let p = &packet_with(&s.tern1, &format!("IPv4 {A4} > {B4} ttl 64 icmp type 8"));
    assert!(step(p, "fib").contains("tunnel grek"), "{p:#?}");
    let tx = step(p, "tx");
    assert!(
        tx.starts_with(&format!("{}: ", s.w1))
            && tx.contains(&format!("IPv4 {TERN1_WAN4} > {TERN2_WAN4}"))
            && tx.contains("proto 47"),
        "GRE to tern2: {p:#?}"
    );
    // tern2: decapsulated from grek, then forwarded to B.
    let p = &packet_with(&s.tern2, &format!("IPv4 {TERN1_WAN4} > {TERN2_WAN4}"));
    assert!(step(p, "decap").starts_with("from tunnel grek: "), "{p:#?}");
    assert!(
        step(p, "decap").contains(&format!("IPv4 {A4} > {B4}")),
        "{p:#?}"
    );
    assert!(
        step(p, "tx").starts_with(&format!("{}: ", s.tap_b)),
        "{p:#?}"
    );
}
