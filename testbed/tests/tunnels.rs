//! Tunnels end to end: two sites joined by two tern instances across a Linux router
//! (the kernel here has no ipip/gre modules, so tern is both ends). Traffic, byte-exact
//! transfers, scapy reference packets compared byte for byte, tshark checksum checks,
//! decap of scapy-built packets with every refusal counted, and MTU handling.

use testbed::*;

fn counter(tern: &Tern, section: &str, name: &str) -> u64 {
    tern.ctl(&["show", "counters"])[section][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {section}.{name}"))
}

on_both_backends!(ipip_and_keyed_gre_carry_ping_and_100_mb_of_tcp_byte_exact);

/// The hosts keep their default offloads: on AF_XDP ports tern finishes their partial
/// checksums before it encapsulates (an incremental update later would keep them wrong).
fn ipip_and_keyed_gre_carry_ping_and_100_mb_of_tcp_byte_exact(ports: Ports) {
    let s = TunnelSites::on(ports, "");
    for tunnel in ["ipip", "grek"] {
        s.route_via(tunnel, false);
        let out = ping(&s.a, &["-c", "3", "-i", "0.2", "-W", "3", B4]);
        assert!(out.contains("3 received"), "{tunnel}: {out}");
        let before = tunnel_row(&s.tern2, tunnel)["rx_packets"]
            .as_u64()
            .unwrap_or(0);
        let (sent, received) = tcp_transfer(&s.a, &s.b, B4, 100);
        assert_eq!(
            received, sent,
            "{tunnel}: bytes and sha256 received equal those sent"
        );
        assert!(sent.starts_with("104857600 "), "{sent}");
        let row = tunnel_row(&s.tern2, tunnel);
        let after = row["rx_packets"].as_u64().unwrap_or(0);
        assert!(
            after - before > 70_000,
            "{tunnel}: 100 MB is over 70k packets through tern2's {tunnel}: {row}"
        );
        assert!(
            tunnel_row(&s.tern1, tunnel)["tx_packets"]
                .as_u64()
                .unwrap_or(0)
                > 70_000
        );
        let (sent, received) = tcp_transfer(&s.b, &s.a, A4, 100);
        assert_eq!(received, sent, "{tunnel}: B->A byte exact");
        for (from, to, addr) in [(&s.a, &s.b, B4), (&s.b, &s.a, A4)] {
            let sizes = [0, 1, 200, 1000, 1400];
            let got = udp_transfer(from, to, addr, &sizes);
            assert_eq!(got, sizes, "{tunnel}: datagrams to {addr} intact");
        }
    }
    // TCP over the tunnel discovered its MTU: A's first full-size segments got frag-needed.
    assert!(counter(&s.tern1, "drops", "too_big") > 0);
}

#[test]
fn ipv6_over_6in4_and_gre6() {
    let s = TunnelSites::new();
    for tunnel in ["sit", "gre6"] {
        s.route_via(tunnel, true);
        let out = ping(&s.a, &["-6", "-c", "3", "-i", "0.2", "-W", "3", B6]);
        assert!(out.contains("3 received"), "{tunnel}: {out}");
        let (sent, received) = tcp_transfer(&s.a, &s.b, B6, 10);
        assert_eq!(received, sent, "{tunnel}: 10 MiB over IPv6 byte exact");
    }
    // IPv4 over GRE over IPv6 too.
    s.route_via("gre6", false);
    let out = ping(&s.a, &["-c", "2", "-i", "0.2", "-W", "3", B4]);
    assert!(out.contains("2 received"), "IPv4 in gre6: {out}");
}

/// Rebuilds each captured outer packet with scapy from the expected field values and the
/// captured inner packet, and compares the bytes.
const COMPARE: &str = r#"
import sys
from scapy.all import rdpcap, IP, IPv6, GRE, Raw, raw
path, kind = sys.argv[1], sys.argv[2]
L4, R4, L6, R6 = "198.18.1.1", "198.18.2.1", "2001:db8:1::1", "2001:db8:2::1"
seen = 0
for p in rdpcap(path):
    outer = p.payload
    b = raw(outer)
    if kind == "gre6":
        inner = b[40 + 4:]
        ref = IPv6(src=L6, dst=R6, hlim=64, nh=47, tc=0, fl=0) / GRE(proto=0x86dd) / Raw(inner)
    else:
        ihl = 20
        if kind == "ipip":
            inner = b[ihl:]
            ref = IP(src=L4, dst=R4, ttl=64, id=0, flags="DF", tos=inner[1], proto=4) / Raw(inner)
        elif kind == "sit":
            inner = b[ihl:]
            tclass = ((inner[0] & 0x0f) << 4) | (inner[1] >> 4)
            ref = IP(src=L4, dst=R4, ttl=64, id=0, flags="DF", tos=tclass, proto=41) / Raw(inner)
        elif kind == "grep":
            inner = b[ihl + 4:]
            ref = IP(src=L4, dst=R4, ttl=64, id=0, flags="DF", tos=inner[1], proto=47) / GRE(proto=0x0800) / Raw(inner)
        elif kind == "grek":
            inner = b[ihl + 8:]
            ref = IP(src=L4, dst=R4, ttl=64, id=0, flags="DF", tos=inner[1], proto=47) / GRE(key_present=1, key=1001, proto=0x0800) / Raw(inner)
        elif kind == "grex":
            inner = b[ihl + 16:]
            ref = IP(src=L4, dst=R4, ttl=64, id=0, flags="DF", tos=inner[1], proto=47) / GRE(
                chksum_present=1, key_present=1, seqnum_present=1, key=2002,
                sequence_number=seen, proto=0x0800) / Raw(inner)
    if raw(ref) != b:
        print("DIFF", kind, raw(ref).hex(), b.hex())
    else:
        print("MATCH", kind, len(b))
    seen += 1
print("SEEN", seen)
"#;

#[test]
fn encapsulated_output_matches_scapy_references_and_tshark_checksums() {
    let s = TunnelSites::new();
    for (tunnel, v6) in [
        ("ipip", false),
        ("grep", false),
        ("grek", false),
        ("grex", false),
        ("sit", true),
        ("gre6", true),
    ] {
        s.route_via(tunnel, v6);
        let filter = if tunnel == "gre6" {
            "ip6 src 2001:db8:1::1 and ip6[6] = 47".to_string()
        } else {
            "ip src 198.18.1.1 and (ip proto 4 or ip proto 41 or ip proto 47)".to_string()
        };
        let mut cap = Capture::start(&s.w, &s.w1, &filter);
        let dst = if v6 { B6 } else { B4 };
        let fam = if v6 { "-6" } else { "-4" };
        let out = ping(&s.a, &[fam, "-c", "3", "-i", "0.2", "-W", "3", dst]);
        assert!(out.contains("3 received"), "{tunnel}: {out}");
        let pcap = cap.stop().to_path_buf();
        let report = scapy(&s.w, COMPARE, &[&pcap.display().to_string(), tunnel]);
        assert!(report.contains("SEEN 3"), "{tunnel}: {report}");
        assert_eq!(report.matches("MATCH").count(), 3, "{tunnel}: {report}");
        assert!(!report.contains("DIFF"), "{tunnel}: {report}");

        // tshark: every checksum it can verify is good; inner TTL/hop limit decremented once.
        if !v6 || tunnel == "sit" {
            for r in tshark(&pcap, "ip", &["ip.checksum.status"]) {
                assert!(r[0].split(',').all(|c| c == "1"), "{tunnel}: {r:?}");
            }
        }
        if tunnel == "grex" {
            let rows = tshark(
                &pcap,
                "gre",
                &["gre.checksum.status", "gre.key", "gre.sequence_number"],
            );
            assert_eq!(rows.len(), 3);
            for (i, r) in rows.iter().enumerate() {
                assert_eq!(r[0], "1", "GRE checksum good: {r:?}");
                assert_eq!(r[1], "0x000007d2", "key 2002: {r:?}");
                assert_eq!(r[2], i.to_string(), "sequence numbers from 0: {r:?}");
            }
        }
        let inner = if v6 {
            tshark(&pcap, "icmpv6.type == 128", &["ipv6.hlim"])
        } else {
            tshark(&pcap, "icmp.type == 8", &["ip.ttl"])
        };
        assert_eq!(inner.len(), 3, "{tunnel}");
        for r in inner {
            let last = r[0].split(',').next_back().unwrap_or_default().to_string();
            assert_eq!(last, "63", "{tunnel}: inner decremented once: {r:?}");
        }
    }
}

/// Sends scapy-built tunnel packets from W to tern2, as if from tern1. Each carries an echo
/// request from A to B with its own ICMP id; the refused ones must never reach B.
const INJECT: &str = r#"
import sys, time
from scapy.all import Ether, IP, IPv6, GRE, ICMP, ICMPv6EchoRequest, Raw, sendp
iface, mac = sys.argv[1], sys.argv[2]
L4, R4, L6, R6 = "198.18.1.1", "198.18.2.1", "2001:db8:1::1", "2001:db8:2::1"
def v4(i): return IP(src="192.0.2.2", dst="203.0.113.2", ttl=10, id=i) / ICMP(id=i, seq=1) / Raw(b"tern-decap-%d" % i)
def v6(i): return IPv6(src="2001:db8:a::2", dst="2001:db8:b::2", hlim=10) / ICMPv6EchoRequest(id=i, seq=1) / Raw(b"tern-decap-%d" % i)
outer = lambda **kw: IP(src=L4, dst=R4, **kw)
good = {
    101: outer(proto=4) / v4(101),
    102: outer() / GRE() / v4(102),
    103: outer() / GRE(key_present=1, key=1001) / v4(103),
    104: outer() / GRE(chksum_present=1, key_present=1, seqnum_present=1, key=2002, sequence_number=5) / v4(104),
    105: outer(proto=41) / v6(105),
    106: IPv6(src=L6, dst=R6) / GRE(proto=0x86dd) / v6(106),
    107: IPv6(src=L6, dst=R6) / GRE() / v4(107),
}
bad = {
    201: IP(src="198.18.2.2", dst=R4, proto=4) / v4(201),                        # wrong remote
    202: outer() / GRE(key_present=1, key=5) / v4(202),                           # wrong key
    203: outer() / GRE(chksum_present=1, key_present=1, seqnum_present=1, key=2002, sequence_number=6, chksum=0x1234) / v4(203),  # bad checksum
    204: outer() / GRE(chksum_present=1, key_present=1, seqnum_present=1, key=2002, sequence_number=5) / v4(204),  # replayed sequence
    205: outer() / GRE(version=1) / v4(205),                                      # version 1
    206: outer() / GRE(key_present=1, key=2002, seqnum_present=1, sequence_number=9) / v4(206),  # checksum missing
    207: outer() / GRE(routing_present=1) / v4(207),                              # unknown flag
}
for i, p in list(good.items()) + list(bad.items()):
    sendp(Ether(dst=mac) / p, iface=iface, verbose=False)
    time.sleep(0.05)
print("sent", len(good) + len(bad))
"#;

#[test]
fn decapsulates_scapy_built_packets_and_counts_each_refusal() {
    let s = TunnelSites::new();
    // Resolve B first so the decapsulated packets are not held for ARP.
    assert!(ping(&s.a, &["-c", "1", "-W", "3", B4]).contains("1 received"));
    assert!(ping(&s.a, &["-6", "-c", "1", "-W", "3", B6]).contains("1 received"));
    let drops = [
        "tunnel_unknown_remote",
        "tunnel_key_mismatch",
        "gre_bad_checksum",
        "gre_bad_sequence",
        "gre_bad_version",
        "gre_checksum_mismatch",
        "gre_bad_flags",
    ];
    let before: Vec<u64> = drops.iter().map(|d| s.tern2.drop_count(d)).collect();
    let mut cap = Capture::start(&s.b, &s.tap_b, "icmp or icmp6");
    let out = scapy(&s.w, INJECT, &[&s.w2, TERN2_WAN_MAC]);
    assert!(out.contains("sent 14"), "{out}");
    let pcap = cap.stop().to_path_buf();
    let mut v4 = tshark(
        &pcap,
        "icmp.type == 8",
        &["icmp.ident", "ip.ttl", "data.data"],
    );
    v4.sort();
    let ids: Vec<&str> = v4.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["101", "102", "103", "104", "107"], "{v4:?}");
    for r in &v4 {
        assert_eq!(r[1], "9", "inner TTL decremented once by tern2: {r:?}");
        let payload = format!("tern-decap-{}", r[0]);
        let hex: String = payload.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r[2], hex, "inner payload intact");
    }
    let mut v6 = tshark(
        &pcap,
        "icmpv6.type == 128",
        &["icmpv6.echo.identifier", "ipv6.hlim"],
    );
    v6.sort();
    assert_eq!(
        v6,
        [
            vec!["0x0069".to_string(), "9".into()],
            vec!["0x006a".to_string(), "9".into()]
        ],
        "ids 105, 106"
    );
    for (d, b) in drops.iter().zip(before) {
        assert_eq!(s.tern2.drop_count(d) - b, 1, "{d}");
    }
}

#[test]
fn too_big_packets_get_frag_needed_with_the_tunnel_mtu_and_path_mtu_is_learned() {
    let s = TunnelSites::new();
    assert!(ping(&s.a, &["-c", "1", "-W", "3", B4]).contains("1 received"));
    assert_eq!(tunnel_row(&s.tern1, "ipip")["mtu"], 1480);

    // DF clear (first: once A learns the PMTU it fragments itself): fragmented by tern1
    // before encapsulation, reassembled by B.
    let fragmented = counter(&s.tern1, "events", "fragmented");
    let out = ping(
        &s.a,
        &[
            "-M", "dont", "-s", "1460", "-c", "2", "-i", "0.3", "-W", "3", B4,
        ],
    );
    assert!(!out.contains(" 0 received"), "{out}");
    assert!(counter(&s.tern1, "events", "fragmented") > fragmented);

    // DF set, 1488 bytes > 1480: tern1 answers with frag-needed carrying 1480.
    let mut cap = Capture::start(&s.a, &s.tap_a, "icmp");
    let out = ping(&s.a, &["-M", "do", "-s", "1460", "-c", "1", "-W", "2", B4]);
    assert!(!out.contains("1 received"), "{out}");
    let pcap = cap.stop().to_path_buf();
    let rows = tshark(
        &pcap,
        "icmp.type == 3 && icmp.code == 4",
        &["icmp.mtu", "ip.src"],
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "1480", "frag-needed carries the tunnel MTU");

    // The path shrinks inside W: W's frag-needed about the outer packet lowers tern1's
    // tunnel MTU (1400 - 20) and tern1 relays frag-needed 1380 to A (RFC 2003 §4).
    s.w.ok(&["ip", "link", "set", &s.w2, "mtu", "1400"]);
    let mut cap = Capture::start(&s.a, &s.tap_a, "icmp");
    let out = ping(&s.a, &["-M", "do", "-s", "1440", "-c", "1", "-W", "2", B4]);
    assert!(!out.contains("1 received"), "{out}");
    let pcap = cap.stop().to_path_buf();
    let rows = tshark(&pcap, "icmp.type == 3 && icmp.code == 4", &["icmp.mtu"]);
    assert_eq!(
        rows,
        [vec!["1380".to_string()]],
        "relayed with the lowered MTU"
    );
    assert_eq!(tunnel_row(&s.tern1, "ipip")["mtu"], 1380);
    assert!(counter(&s.tern1, "events", "tunnel_icmp_relayed") >= 1);
    // And a packet that fits the new MTU goes through.
    let out = ping(
        &s.a,
        &[
            "-M", "do", "-s", "1300", "-c", "2", "-i", "0.3", "-W", "3", B4,
        ],
    );
    assert!(out.contains("2 received"), "{out}");
}

#[test]
fn a_route_to_the_remote_through_the_tunnel_is_dropped_as_a_loop() {
    let s = TunnelSites::new();
    // The remote endpoint's own /32 into the tunnel: every encapsulated packet would
    // re-enter the tunnel.
    s.tern1
        .ctl(&["route", "add", "198.18.2.1/32", "dev", "ipip"]);
    let before = s.tern1.drop_count("tunnel_loop");
    let out = ping(&s.a, &["-c", "2", "-i", "0.2", "-W", "1", B4]);
    assert!(out.contains(" 0 received"), "{out}");
    assert_eq!(s.tern1.drop_count("tunnel_loop") - before, 2);
}

#[test]
fn snat_before_encapsulation_translates_the_inner_source_and_the_outer_uses_the_endpoint() {
    // tern1 masquerades site A behind 198.51.100.1 on its way into the keyed GRE tunnel;
    // tern2 routes that address back into the tunnel.
    let s = TunnelSites::with(
        "[nat]\ninside = [\"{tap_a}\"]\noutside = [\"grek\"]\npool = [\"198.51.100.1\"]\n",
    );
    s.route_via("grek", false);
    s.tern2
        .ctl(&["route", "add", "198.51.100.0/24", "dev", "grek"]);
    let mut at_b = Capture::start(&s.b, &s.tap_b, "icmp or tcp");
    let mut on_wan = Capture::start(&s.w, &s.w1, "ip proto 47");
    let out = ping(&s.a, &["-c", "3", "-i", "0.2", "-W", "3", B4]);
    assert!(
        out.contains("3 received"),
        "{out}\ntern1: {}\ntern2: {}",
        s.tern1.ctl(&["show", "counters"]),
        s.tern2.ctl(&["show", "counters"])
    );
    let (sent, received) = tcp_transfer(&s.a, &s.b, B4, 20);
    assert_eq!(received, sent, "byte-exact through SNAT + GRE");
    let at_b = at_b.stop().to_path_buf();
    let on_wan = on_wan.stop().to_path_buf();

    // At B: the inner source is the pool address, never A's.
    let rows = tshark(
        &at_b,
        "icmp.type == 8",
        &["ip.src", "ip.dst", "icmp.checksum.status"],
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(r[0], "198.51.100.1", "inner source translated: {r:?}");
        assert_eq!(r[1], B4);
        assert_eq!(r[2], "1", "ICMP checksum good after translation");
    }
    let tcp_sources = tshark(&at_b, "tcp.dstport == 5001", &["ip.src"]);
    assert!(
        !tcp_sources.is_empty() && tcp_sources.iter().all(|r| r[0] == "198.51.100.1"),
        "TCP from A arrives from the pool address: {:?}",
        tcp_sources.first()
    );
    // On the WAN: outer source = tern1's endpoint, inner source = the pool address, key 1001.
    let rows = tshark(
        &on_wan,
        "gre && icmp.type == 8",
        &["ip.src", "ip.dst", "gre.key", "ip.checksum.status"],
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    for r in &rows {
        assert_eq!(
            r[0],
            format!("{TERN1_WAN4},198.51.100.1"),
            "outer, inner source: {r:?}"
        );
        assert_eq!(
            r[1],
            format!("{TERN2_WAN4},{B4}"),
            "outer, inner destination: {r:?}"
        );
        assert_eq!(r[2], "0x000003e9", "key 1001: {r:?}");
        assert_eq!(r[3], "1,1", "both IPv4 header checksums good: {r:?}");
    }
    let sessions = s.tern1.ctl(&["show", "conntrack", "addr", A4]);
    assert!(
        sessions.to_string().contains("198.51.100.1"),
        "tern1 tracks A's flows with their pool address: {sessions}"
    );
}
