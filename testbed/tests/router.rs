//! tern between two real Linux hosts in network namespaces: forwarding, ICMP errors,
//! neighbour resolution from cold caches, fragmentation, and malformed frames.

use std::time::Duration;

use testbed::*;

on_both_backends!(
    ping_v4_and_v6_from_cold_caches_with_ttl_and_macs_checked_by_tshark,
    icmp_errors_time_exceeded_unreachable_and_too_big,
    udp_and_100_mb_of_tcp_both_ways_over_ipv4_and_ipv6_between_offloading_hosts,
    malformed_frames_are_counted_by_reason_and_good_traffic_flows_around_them,
);

fn ping_v4_and_v6_from_cold_caches_with_ttl_and_macs_checked_by_tshark(ports: Ports) {
    let t = TwoHosts::with(ports, "", 1500);
    let b_mac =
        t.b.ok(&["cat", &format!("/sys/class/net/{}/address", t.tap_b)])
            .trim()
            .to_string();
    let mut cap = Capture::start(&t.b, &t.tap_b, "icmp or icmp6");
    // Cold caches everywhere: the first echo waits in tern for B's ARP/NDP answer.
    let v4 = ping(&t.a, &["-c", "3", "-i", "0.2", "-W", "3", B4]);
    assert!(v4.contains("3 received"), "{v4}");
    let v6 = ping(&t.a, &["-6", "-c", "3", "-i", "0.2", "-W", "3", B6]);
    assert!(v6.contains("3 received"), "{v6}");
    let pcap = cap.stop().to_path_buf();

    let rows = tshark(
        &pcap,
        "icmp.type == 8",
        &["ip.ttl", "eth.src", "eth.dst", "ip.checksum.status"],
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r[0], "63", "TTL decremented exactly once (A sends 64)");
        assert_eq!(r[1], "02:00:00:00:0b:01", "source MAC is tern's B port");
        assert_eq!(r[2], b_mac, "destination MAC is B's");
        assert_eq!(
            r[3], "1",
            "IPv4 header checksum good (tshark: 0 bad, 1 good, 2 unverified)"
        );
    }
    let rows = tshark(
        &pcap,
        "icmpv6.type == 128",
        &["ipv6.hlim", "eth.src", "eth.dst"],
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r[0], "63", "hop limit decremented once");
        assert_eq!(r[1], "02:00:00:00:0b:01");
        assert_eq!(r[2], b_mac);
    }
    let neighbors = t.tern.ctl(&["show", "neighbors"]);
    let reachable: Vec<&str> = neighbors
        .as_array()
        .expect("list")
        .iter()
        .filter(|n| n["state"] == "reachable")
        .filter_map(|n| n["address"].as_str())
        .collect();
    assert!(
        reachable.contains(&B4) && reachable.contains(&B6),
        "{neighbors}"
    );
    let counters = t.tern.ctl(&["show", "counters"]);
    assert!(
        counters["control"]["held_sent"].as_u64().unwrap_or(0) >= 2,
        "packets that waited for resolution were delivered: {counters}"
    );
    // Echo to tern itself.
    assert!(ping(&t.a, &["-c", "1", "-W", "2", TERN_A4]).contains("1 received"));
    assert!(ping(&t.a, &["-6", "-c", "1", "-W", "2", TERN_A6]).contains("1 received"));
}

fn icmp_errors_time_exceeded_unreachable_and_too_big(ports: Ports) {
    let t = TwoHosts::with(ports, "", 1400);
    // Warm the caches first so every probe below reaches tern's forwarding path.
    assert!(ping(&t.a, &["-c", "1", "-W", "3", B4]).contains("1 received"));
    assert!(ping(&t.a, &["-6", "-c", "1", "-W", "3", B6]).contains("1 received"));

    let out = ping(&t.a, &["-c", "1", "-W", "2", "-t", "1", B4]);
    assert!(
        out.contains("From 192.0.2.1") && out.contains("Time to live exceeded"),
        "{out}"
    );
    let out = ping(&t.a, &["-c", "1", "-W", "2", "198.51.100.7"]);
    assert!(
        out.contains("From 192.0.2.1") && out.contains("Destination Net Unreachable"),
        "{out}"
    );
    // DF clear first (once A has learned the path MTU it would fragment by itself): tern
    // fragments, B reassembles and answers (its reply is fragmented by B's own kernel).
    let out = ping(
        &t.a,
        &["-c", "2", "-W", "3", "-M", "dont", "-s", "1450", B4],
    );
    assert!(out.contains("2 received"), "{out}");
    let out = ping(&t.a, &["-c", "1", "-W", "2", "-M", "do", "-s", "1450", B4]);
    assert!(
        out.contains("mtu = 1400"),
        "frag needed with the next-hop MTU: {out}"
    );

    let out = ping(&t.a, &["-6", "-c", "1", "-W", "2", "-t", "1", B6]);
    assert!(
        out.contains("From 2001:db8:a::1") && out.contains("Time exceeded: Hop limit"),
        "{out}"
    );
    let out = ping(&t.a, &["-6", "-c", "1", "-W", "2", "2001:db8:ff::7"]);
    assert!(out.contains("Destination unreachable: No route"), "{out}");
    let out = ping(&t.a, &["-6", "-c", "1", "-W", "2", "-s", "1450", B6]);
    assert!(out.contains("Packet too big: mtu=1400"), "{out}");

    let c = t.tern.ctl(&["show", "counters"]);
    assert!(c["events"]["fragmented"].as_u64().unwrap_or(0) >= 2, "{c}");
    for reason in ["ttl_exceeded", "no_route", "too_big"] {
        assert!(
            c["drops"][reason].as_u64().unwrap_or(0) >= 2,
            "{reason}: {c}"
        );
    }
}

/// Hosts keep the kernel's default offloads, so their TCP and UDP leave with partial
/// checksums (veth, tx checksumming on): tern must finish them on AF_XDP ports, where the
/// kernel's mark does not reach it, or the receivers drop every segment.
fn udp_and_100_mb_of_tcp_both_ways_over_ipv4_and_ipv6_between_offloading_hosts(ports: Ports) {
    let t = TwoHosts::with(ports, "", 1500);
    let directions = [
        (&t.a, &t.b, B4, "A->B v4"),
        (&t.b, &t.a, A4, "B->A v4"),
        (&t.a, &t.b, B6, "A->B v6"),
        (&t.b, &t.a, A6, "B->A v6"),
    ];
    for (from, to, addr, what) in directions {
        let largest = if addr.contains(':') { 1452 } else { 1472 };
        assert_udp_and_tcp_intact(from, to, addr, &[0, 1, 17, 200, 1000, largest], what);
    }
    let c = t.tern.ctl(&["show", "counters"]);
    let completed = c["events"]["checksum_completed"].as_u64().unwrap_or(0);
    match ports {
        // Every TCP segment and datagram of the senders above came with a partial sum.
        Ports::AfXdp => assert!(completed > 100_000, "{c}"),
        // The kernel finishes the sums before a TAP reader sees them.
        Ports::Tap => assert_eq!(completed, 0, "{c}"),
    }
}

fn malformed_frames_are_counted_by_reason_and_good_traffic_flows_around_them(ports: Ports) {
    let t = TwoHosts::with(ports, "", 1500);
    assert!(ping(&t.a, &["-c", "1", "-W", "3", B4]).contains("1 received"));
    // Raw frames on A's link, to tern's MAC, from a raw AF_PACKET socket (scapy sendp).
    let script = r#"
import sys
from scapy.all import Ether, IP, IPv6, ICMP, Raw, sendp, raw
iface, dst = sys.argv[1], "02:00:00:00:0a:01"
src = open(f"/sys/class/net/{iface}/address").read().strip()
eth4 = Ether(dst=dst, src=src, type=0x0800)
eth6 = Ether(dst=dst, src=src, type=0x86dd)
good = raw(IP(src="192.0.2.2", dst="203.0.113.2") / ICMP())
frames = {
  # A frame shorter than 14 bytes cannot leave a Linux AF_PACKET socket (the kernel pads
  # it); runts are covered by the memory-backend tests. LLDP stands in for "not IP/ARP".
  "unsupported_ethertype": raw(Ether(dst=dst, src=src, type=0x88cc)) + b"\x00" * 46,
  "ipv4_truncated": raw(eth4) + good[:12],
  "ipv4_bad_version": raw(eth4) + bytes([0x65]) + good[1:],
  "ipv4_bad_ihl": raw(eth4) + bytes([0x43]) + good[1:],
  "ipv4_bad_checksum": raw(eth4) + good[:10] + bytes([good[10] ^ 0xff, good[11]]) + good[12:],
  "ipv4_bad_total_length": raw(eth4) + raw(IP(src="192.0.2.2", dst="203.0.113.2", len=400) / ICMP()),
  "ipv6_bad_payload_length": raw(eth6) + raw(IPv6(src="2001:db8:a::2", dst="2001:db8:b::2", plen=500) / Raw(b"x" * 8)),
  "ipv6_truncated": raw(eth6) + b"\x60" + b"\x00" * 20,
}
for name, f in frames.items():
    sendp(f, iface=iface, count=5, verbose=False)
print(" ".join(frames))
"#;
    let names = scapy(&t.a, script, &[&t.tap_a]);
    std::thread::sleep(Duration::from_millis(300));
    let counters = t.tern.ctl(&["show", "counters"]);
    for name in names.split_whitespace() {
        let n = counters["drops"][name].as_u64().unwrap_or(0);
        assert!(n >= 5, "drop counter {name} = {n}: {counters}");
    }
    assert!(
        ping(&t.a, &["-c", "3", "-i", "0.2", "-W", "2", B4]).contains("3 received"),
        "still forwarding"
    );
}

/// An operator's signals and pipes: SIGHUP leaves tern running and forwarding (it logs that
/// it does not reload), a `tern ctl` reader that closes its pipe early ends the client
/// quietly, and a SIGTERM removes the ctl socket.
#[test]
fn sighup_keeps_tern_forwarding_a_closed_pipe_ends_ctl_quietly_and_exit_removes_the_socket() {
    let mut t = TwoHosts::new("", 1500);
    let pid = t.tern.pid().expect("tern runs") as i32;
    // SAFETY: signalling the tern this test started, by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    eventually(Duration::from_secs(5), "the SIGHUP log line", || {
        t.tern.log().contains("SIGHUP")
    });
    let out = ping(&t.a, &["-c", "2", "-i", "0.2", "-W", "2", B4]);
    assert!(
        out.contains("2 received"),
        "still forwarding after SIGHUP: {out}"
    );

    let socket = t.tern.socket.display().to_string();
    let tern = tern_binary().display().to_string();
    let direct = std::process::Command::new("bash")
        .args([
            "-c",
            &format!("{tern} ctl --socket {socket} show counters --json | head -c 1 >/dev/null; echo ${{PIPESTATUS[0]}}"),
        ])
        .output()
        .expect("bash");
    let stderr = String::from_utf8_lossy(&direct.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout).trim(),
        "0",
        "tern ctl exits 0 when its reader goes: {stderr}"
    );

    let status = t.tern.stop().expect("tern was running");
    assert!(status.success(), "{status}");
    assert!(!t.tern.socket.exists(), "the ctl socket is removed on exit");
}
