//! tern as a NAT gateway between real Linux hosts: A (192.0.2.2) inside, B (203.0.113.2,
//! with more addresses as the cases need) outside, tern masquerading to 203.0.113.1.
//! Stimuli from sockets, results read from captures with tshark and from tern's counters.

use std::time::{Duration, Instant};

use testbed::*;

const NAT: &str = "[nat]\ninside = [\"{tap_a}\"]\noutside = [\"{tap_b}\"]\n";
const X: &str = TERN_B4;

/// A counter of `show conntrack` summed over the shards (one per worker).
fn shard_sum(conntrack: &serde_json::Value, counter: &str) -> u64 {
    let shards = conntrack["shards"].as_array().into_iter().flatten();
    shards.filter_map(|s| s[counter].as_u64()).sum()
}

fn sessions(t: &TwoHosts, filter: &[&str]) -> Vec<serde_json::Value> {
    let mut words = vec!["show", "conntrack"];
    words.extend_from_slice(filter);
    let v = t.tern.ctl(&words);
    v["sessions"].as_array().cloned().expect("sessions")
}

on_both_backends!(
    snat_carries_tcp_udp_and_ping_with_the_external_address_and_translates_errors,
    hairpin_between_inside_hosts_on_two_workers_keeps_one_mapping_per_endpoint,
    udp_of_six_sizes_and_100_mb_of_tcp_both_ways_through_the_nat_between_offloading_hosts,
);

fn snat_carries_tcp_udp_and_ping_with_the_external_address_and_translates_errors(ports: Ports) {
    let t = TwoHosts::with(ports, NAT, 1500);
    let mut cap = Capture::start(&t.b, &t.tap_b, "icmp or udp or tcp");

    let out = ping(&t.a, &["-c", "3", "-i", "0.2", "-W", "3", B4]);
    assert!(out.contains("3 received"), "{out}");

    // 100 MiB over TCP, byte for byte.
    let (sent, received) = tcp_transfer(&t.a, &t.b, B4, 100);
    assert_eq!(sent, received);
    assert!(sent.starts_with("104857600 "), "{sent}");

    // UDP both ways: B sees the external address and A's own port (port preservation),
    // and its answer reaches A.
    let server =
        t.b.command(&[
            "/usr/bin/python3",
            "-c",
            r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 7000)); s.settimeout(20)
data, peer = s.recvfrom(2000)
s.sendto(data[::-1], peer)
print(peer[0], peer[1])
"#,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("udp server");
    let client = scapy(
        &t.a,
        r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 40000)); s.settimeout(2)
for _ in range(20):
    s.sendto(b"tern-nat", (sys.argv[1], 7000))
    try:
        print(s.recvfrom(2000)[0].decode()); break
    except socket.timeout:
        pass
"#,
        &[B4],
    );
    let seen =
        String::from_utf8_lossy(&server.wait_with_output().expect("server").stdout).to_string();
    assert_eq!(client.trim(), "tan-nret");
    assert_eq!(seen.trim(), format!("{X} 40000"));

    // A closed port on B: B's ICMP port unreachable comes back through the NAT to A's
    // connected socket as "connection refused" (RFC 5508 error translation).
    let refused = scapy(
        &t.a,
        r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect((sys.argv[1], 9)); s.settimeout(3)
s.send(b"x")
try:
    s.recv(100); print("answer")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")
"#,
        &[B4],
    );
    assert_eq!(refused.trim(), "refused");

    let rows = sessions(&t, &["proto", "udp", "port", "7000"]);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["orig_src"], "192.0.2.2:40000");
    assert_eq!(rows[0]["reply_dst"], format!("{X}:40000"));
    assert_eq!(rows[0]["state"], "replied");

    let pcap = cap.stop().to_path_buf();
    // Nothing leaves with the inside address; everything from tern carries X, with good
    // checksums (tshark: 1 = good).
    assert!(tshark(&pcap, "ip.src == 192.0.2.2", &["frame.number"]).is_empty());
    let echo = tshark(
        &pcap,
        "icmp.type == 8",
        &["ip.src", "ip.checksum.status", "icmp.checksum.status"],
    );
    assert_eq!(echo.len(), 3, "{echo:?}");
    for r in &echo {
        assert_eq!(r, &[X, "1", "1"]);
    }
    let udp = tshark(
        &pcap,
        "udp.dstport == 7000 && !icmp",
        &["ip.src", "udp.srcport", "udp.checksum.status"],
    );
    assert!(!udp.is_empty());
    for r in &udp {
        assert_eq!(r, &[X, "40000", "1"]);
    }
    let syn = tshark(
        &pcap,
        "tcp.flags.syn == 1 && tcp.flags.ack == 0",
        &["ip.src", "tcp.checksum.status"],
    );
    assert!(!syn.is_empty());
    for r in &syn {
        assert_eq!(r, &[X, "1"]);
    }
}

#[test]
fn mapping_is_endpoint_independent_filtering_address_dependent_and_unsolicited_syn_held() {
    let t = TwoHosts::new(NAT, 1500);
    for extra in ["203.0.113.3/24", "203.0.113.4/24"] {
        t.b.ok(&["ip", "addr", "add", extra, "dev", &t.tap_b]);
    }
    let mut cap = Capture::start(&t.b, &t.tap_b, "udp");
    // A sends from port 41000 to .2 and .3, then listens for 4 s.
    let a =
        t.a.command(&[
            "/usr/bin/python3",
            "-c",
            r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 41000))
for dst in ("203.0.113.2", "203.0.113.3"):
    s.sendto(b"out", (dst, 7000))
s.settimeout(0.2); end = time.time() + 4
while time.time() < end:
    try:
        d, p = s.recvfrom(100); print(p[0], p[1], d.decode(), flush=True)
    except socket.timeout:
        pass
"#,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("inside host");
    std::thread::sleep(Duration::from_millis(1500));
    // Same address, another port: admitted (address-dependent). An address A never
    // sent to: filtered.
    scapy(
        &t.b,
        r#"
import socket, sys
for src, port in (("203.0.113.2", 7777), ("203.0.113.4", 7000)):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((src, port))
    s.sendto(("from %s:%d" % (src, port)).encode(), (sys.argv[1], 41000))
"#,
        &[X],
    );
    let got = String::from_utf8_lossy(&a.wait_with_output().expect("a").stdout).to_string();
    assert_eq!(
        got.trim(),
        "203.0.113.2 7777 from 203.0.113.2:7777",
        "{got}"
    );
    assert!(t.tern.drop_count("nat_filtered") >= 1);

    // Both outbound packets left from the same external port (EIM), A's own.
    let pcap = cap.stop().to_path_buf();
    let rows = tshark(
        &pcap,
        "udp.dstport == 7000 && ip.src == 203.0.113.1",
        &["ip.dst", "udp.srcport"],
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][1], rows[1][1]);
    assert_ne!(rows[0][0], rows[1][0]);

    // An unsolicited SYN to the external address: no answer for 6 s, then ICMP port
    // unreachable (RFC 5382 REQ-4), which fails the connect as "refused".
    let out = scapy(
        &t.b,
        r#"
import socket, sys, time
s = socket.socket(); s.settimeout(15); t0 = time.time()
try:
    s.connect((sys.argv[1], 45000)); print("connected")
except ConnectionRefusedError:
    print("refused %.1f" % (time.time() - t0))
except OSError as e:
    print("error %s %.1f" % (e, time.time() - t0))
"#,
        &[X],
    );
    let secs: f64 = out
        .trim()
        .strip_prefix("refused ")
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .expect("seconds");
    assert!((5.5..9.0).contains(&secs), "answered after {secs} s");
    let counters = t.tern.ctl(&["show", "counters"]);
    assert!(
        counters["events"]["nat_syn_answered"].as_u64() >= Some(1),
        "{counters}"
    );
}

#[test]
fn dnat_port_forward_carries_tcp_and_conntrack_delete_ends_it() {
    let extra = format!(
        "{NAT}\n[[nat.forward]]\nname = \"svc\"\nproto = \"tcp\"\nexternal = \"{X}:5001\"\nbackends = [\"{A4}:5001\"]\n"
    );
    let t = TwoHosts::new(&extra, 1500);
    // B connects to tern's outside address; A serves. 20 MiB, byte for byte.
    let (sent, received) = tcp_transfer(&t.b, &t.a, X, 20);
    assert_eq!(sent, received);
    let rows = sessions(&t, &["port", "5001"]);
    assert!(
        rows.iter()
            .any(|r| r["kind"] == "dnat" && r["reply_src"] == format!("{A4}:5001")),
        "{rows:?}"
    );
    let deleted = t.tern.ctl(&["conntrack", "delete", "port", "5001"]);
    assert!(deleted["deleted"].as_u64() >= Some(1), "{deleted}");
    assert!(sessions(&t, &["port", "5001"]).is_empty());

    // Runtime rules: take the only backend down, and new connections find nothing.
    t.tern
        .ctl(&["nat", "backend", "svc", &format!("{A4}:5001"), "down"]);
    let before = t.tern.drop_count("nat_no_backend");
    let start = Instant::now();
    let out = scapy(
        &t.b,
        r#"
import socket, sys
s = socket.socket(); s.settimeout(2)
try:
    s.connect((sys.argv[1], 5001)); print("connected")
except OSError:
    print("failed")
"#,
        &[X],
    );
    assert_eq!(out.trim(), "failed");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(t.tern.drop_count("nat_no_backend") > before);

    // A forward added at run time takes its external port out of the SNAT port space; one
    // on a port a forward (or a live mapping) already has is refused; del frees the port.
    t.tern.ctl(&[
        "nat",
        "forward",
        "add",
        "web",
        "tcp",
        &format!("{X}:8080"),
        &format!("{A4}:80"),
    ]);
    let again = t.tern.try_ctl(&[
        "nat",
        "forward",
        "add",
        "web2",
        "tcp",
        &format!("{X}:8080"),
        &format!("{A4}:81"),
    ]);
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.contains("already a frontend")),
        "{again:?}"
    );
    t.tern.ctl(&["nat", "forward", "del", "web"]);
    t.tern.ctl(&[
        "nat",
        "forward",
        "add",
        "web2",
        "tcp",
        &format!("{X}:8080"),
        &format!("{A4}:81"),
    ]);
    // A's UDP from port 40123 is masqueraded to X:40123 (port preserved); a forward may not
    // take that port while the mapping lives.
    t.a.ok(&[
        "python3",
        "-c",
        &format!(
            "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.bind(('', 40123)); s.sendto(b'x', ('{B4}', 7000))"
        ),
    ]);
    let taken = t.tern.try_ctl(&[
        "nat",
        "forward",
        "add",
        "udp1",
        "udp",
        &format!("{X}:40123"),
        &format!("{A4}:53"),
    ]);
    assert!(
        taken
            .as_ref()
            .is_err_and(|e| e.contains("in use by a NAT mapping")),
        "{taken:?}"
    );
}

/// Opens `per_host` UDP sockets on each of the inside addresses 192.0.2.10, .11, …
/// (`hosts` of them) of A, all at once, each sending to B's echo server until answered.
/// Returns how many were answered and how many distinct peers (external endpoints) B saw.
/// Gives host A the addresses 192.0.2.`i` for each `i` (more inside hosts on one link).
fn add_inside_addresses(t: &TwoHosts, last_octets: std::ops::Range<u8>) {
    for i in last_octets {
        let addr = format!("192.0.2.{i}/24");
        t.a.ok(&["ip", "addr", "add", &addr, "dev", &t.tap_a]);
    }
}

fn concurrent_udp_flows(t: &TwoHosts, hosts: u8, per_host: usize) -> (usize, usize) {
    add_inside_addresses(t, 10..10 + hosts);
    let server =
        t.b.command(&[
            "/usr/bin/python3",
            "-c",
            r#"
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("0.0.0.0", 7000)); s.settimeout(5)
peers = set(); end = time.time() + 60
while time.time() < end:
    try:
        d, p = s.recvfrom(100)
    except socket.timeout:
        break
    peers.add(p); s.sendto(d, p)
print(len(peers))
"#,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server");
    std::thread::sleep(Duration::from_millis(500));
    let out = scapy(
        &t.a,
        r#"
import resource, selectors, socket, sys, time
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
socks = []
for i in range(10, 10 + int(sys.argv[3])):
    for _ in range(int(sys.argv[2])):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("192.0.2.%d" % i, 0)); s.setblocking(False)
        socks.append(s)
pending = set(range(len(socks))); end = time.time() + 40
sel = selectors.DefaultSelector()
for n, s in enumerate(socks):
    sel.register(s, selectors.EVENT_READ, n)
while pending and time.time() < end:
    for n in list(pending)[:2000]:
        try:
            socks[n].sendto(b"%d" % n, (sys.argv[1], 7000))
        except BlockingIOError:
            pass
        time.sleep(0.0002)
    t0 = time.time()
    while time.time() - t0 < 0.5:
        for key, _ in sel.select(0.1):
            try:
                d = key.fileobj.recv(100)
                if d == b"%d" % key.data:
                    pending.discard(key.data)
            except BlockingIOError:
                pass
print(len(socks) - len(pending))
"#,
        &[B4, &per_host.to_string(), &hosts.to_string()],
    );
    let peers = String::from_utf8_lossy(&server.wait_with_output().expect("server").stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (out.trim().parse().unwrap_or(0), peers)
}

#[test]
fn ten_thousand_concurrent_udp_flows_from_four_inside_hosts() {
    let t = TwoHosts::new(NAT, 1500);
    let (answered, peers) = concurrent_udp_flows(&t, 4, 2500);
    assert_eq!(answered, 10_000, "flows answered");
    assert_eq!(peers, 10_000, "distinct external endpoints seen by B");
    let ct = t.tern.ctl(&["show", "conntrack", "proto", "udp"]);
    assert_eq!(shard_sum(&ct, "sessions_total"), 10_000, "{}", ct["shards"]);
    // The listing streams from the shard in pages of at most 1 024 rows: all of them
    // arrive, each once, and a limit or a filter cuts the stream short.
    let rows = ct["sessions"].as_array().expect("sessions");
    assert_eq!((rows.len(), ct["count"].as_u64()), (10_000, Some(10_000)));
    let distinct: std::collections::HashSet<&str> = rows
        .iter()
        .filter_map(|r| r["reply_dst"].as_str())
        .collect();
    assert_eq!(distinct.len(), 10_000, "one row per session");
    let limited = t
        .tern
        .ctl(&["show", "conntrack", "proto", "udp", "limit", "5"]);
    assert_eq!(limited["sessions"].as_array().map(Vec::len), Some(5));
    let port = rows[0]["orig_src"]
        .as_str()
        .and_then(|e| e.rsplit(':').next());
    let one = t
        .tern
        .ctl(&["show", "conntrack", "port", port.expect("a port")]);
    let matching = one["sessions"].as_array().expect("sessions");
    assert!(
        !matching.is_empty() && matching.len() < 10_000,
        "{} sessions with port {port:?}",
        matching.len()
    );
}

/// Two workers on multi-queue TAP: the kernel puts a flow's request and its reply on
/// queues of its choosing, so about half the replies reach the worker that does not own
/// the session and are handed over. Every flow must still work, and a TCP transfer stay
/// byte-exact. The flows come from 40 inside addresses: an address's home shard is a hash
/// with the process's random seed, and with 40 the chance that every one lands on the same
/// shard (leaving the other without sessions) is 2⁻³⁹ — with 4 it was 1/8.
#[test]
fn nat_on_two_workers_keeps_every_flow_across_the_hand_off() {
    let t = TwoHosts::new(&format!("[dataplane]\nworkers = 2\n{NAT}"), 1500);
    let (answered, peers) = concurrent_udp_flows(&t, 40, 50);
    assert_eq!(answered, 2000, "flows answered");
    assert_eq!(peers, 2000, "distinct external endpoints seen by B");
    let (sent, received) = tcp_transfer(&t.a, &t.b, B4, 50);
    assert_eq!(sent, received, "byte-exact through SNAT on two workers");

    let c = t.tern.ctl(&["show", "counters"]);
    let handed = c["events"]["handed_off"].as_u64().unwrap_or(0);
    assert!(
        handed > 0,
        "some frames reached the other worker's shard: {c}"
    );
    assert_eq!(c["events"]["handed_in"].as_u64(), Some(handed), "{c}");
    let ct = t.tern.ctl(&["show", "conntrack", "proto", "udp"]);
    let per_shard: Vec<u64> = ct["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["by_class"]["udp"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        2000,
        "UDP sessions: {per_shard:?}"
    );
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards own flows: {per_shard:?}"
    );
}

#[test]
fn two_inside_hosts_with_the_same_echo_id_get_distinct_external_ids_and_their_own_replies() {
    // RFC 5508 §3.1 / RFC 4787: ICMP query ids are mapped like ports; two inside hosts that
    // pick the same id must not collide.
    let t = TwoHosts::new(NAT, 1500);
    add_inside_addresses(&t, 10..12);
    let mut cap = Capture::start(&t.b, &t.tap_b, "icmp");
    let out = scapy(
        &t.a,
        r#"
import sys
from scapy.all import IP, ICMP, sr, conf
conf.verb = 0
reqs = [IP(src="192.0.2.10", dst=sys.argv[1])/ICMP(id=0x1234, seq=1),
        IP(src="192.0.2.11", dst=sys.argv[1])/ICMP(id=0x1234, seq=2)]
ans, _ = sr(reqs, timeout=4, multi=True)
ok = sorted("%s %d %d" % (r[IP].dst, r[ICMP].id, r[ICMP].seq) for _, r in ans if r[ICMP].type == 0)
print(";".join(ok))
"#,
        &[B4],
    );
    assert_eq!(
        out.trim(),
        "192.0.2.10 4660 1;192.0.2.11 4660 2",
        "each inside host got its own reply with its own id back"
    );
    let pcap = cap.stop().to_path_buf();
    let rows = tshark(
        &pcap,
        "icmp.type == 8",
        &["ip.src", "icmp.ident", "icmp.checksum.status"],
    );
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r[0] == X && r[2] == "1"), "{rows:?}");
    assert_ne!(rows[0][1], rows[1][1], "distinct external ids: {rows:?}");
}

#[test]
fn hairpin_tcp_to_a_forwarded_port_arrives_from_the_external_address() {
    // RFC 4787 REQ-9 / RFC 5382 REQ-8: an inside host reaching another inside service by its
    // external address and port is hairpinned, and the service sees the external source.
    let extra = format!(
        "{NAT}\n[[nat.forward]]\nname = \"svc\"\nproto = \"tcp\"\nexternal = \"{X}:5001\"\nbackends = [\"192.0.2.10:5001\"]\n"
    );
    let t = TwoHosts::new(&extra, 1500);
    t.a.ok(&["ip", "addr", "add", "192.0.2.10/24", "dev", &t.tap_a]);
    let server = t.a.spawn(&[
        "python3",
        "-c",
        "import socket\n\
         s=socket.socket(); s.bind(('192.0.2.10', 5001)); s.listen(1); s.settimeout(8)\n\
         c,p=s.accept(); c.sendall(('%s' % p[0]).encode()); c.close(); print(p[0])\n",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    // The client is the other inside address (A's own 192.0.2.2).
    let seen_by_client = t.a.ok(&[
        "python3",
        "-c",
        &format!(
            "import socket\n\
             c=socket.create_connection(('{X}', 5001), timeout=5, source_address=('{A4}', 0))\n\
             print(c.recv(100).decode())\n"
        ),
    ]);
    let out = server.wait_with_output().expect("server");
    let seen_by_server = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(seen_by_server, X, "the service sees the external address");
    assert_eq!(seen_by_client.trim(), X);
    let rows = sessions(&t, &["port", "5001"]);
    assert!(
        rows.iter().any(|r| r["kind"] == "loopback"),
        "a loopback session: {rows:?}"
    );
}

#[test]
fn a_full_session_table_answers_a_new_flow_with_icmp_admin_prohibited() {
    // RFC 5508 §3 / RFC 4787: when no session can be created (every slot holds a replied
    // flow, so nothing may be dropped early), the new flow's source gets ICMP 3/13.
    let t = TwoHosts::new(&format!("{NAT}capacity = 16\n"), 1500);
    let server = t.b.spawn(&[
        "python3",
        "-c",
        "import socket\n\
         s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7000)); s.settimeout(10)\n\
         while True:\n    d,p=s.recvfrom(100); s.sendto(d,p)\n",
    ]);
    let _server = KillOnDrop(server);
    std::thread::sleep(Duration::from_millis(300));
    let mut cap = Capture::start(&t.a, &t.tap_a, "icmp");
    let out = scapy(
        &t.a,
        r#"
import socket, sys
socks = []
for i in range(16):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
    s.bind(("", 41000 + i)); s.sendto(b"x", (sys.argv[1], 7000)); s.recvfrom(10)
    socks.append(s)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", 41999))
s.sendto(b"one too many", (sys.argv[1], 7000))
import time; time.sleep(1)
print("16 answered")
"#,
        &[B4],
    );
    assert_eq!(out.trim(), "16 answered");
    let pcap = cap.stop().to_path_buf();
    let rows = tshark(
        &pcap,
        "icmp.type == 3 && icmp.code == 13",
        &["ip.src", "ip.dst", "udp.srcport", "icmp.checksum.status"],
    );
    assert_eq!(rows.len(), 1, "one 3/13 for the 17th flow: {rows:?}");
    // Outer header, then the quoted (untranslated) packet of the refused flow.
    assert_eq!(
        rows[0][0],
        format!("{TERN_A4},{A4}"),
        "from tern's inside address"
    );
    assert_eq!(rows[0][1], format!("{A4},{B4}"));
    assert_eq!(rows[0][2], "41999", "quoting the refused flow");
    assert_eq!(rows[0][3], "1", "ICMP checksum good");
    assert!(t.tern.drop_count("nat_table_full") >= 1);
}

#[test]
fn too_big_with_df_gets_frag_needed_to_the_untranslated_source() {
    // A DF packet too big for the outside link is answered with ICMP 3/4 and the next-hop
    // MTU (RFC 1191), addressed to the inside host as it sent it (the check comes before
    // SNAT), and the mapping keeps working for packets that fit.
    let t = TwoHosts::new(NAT, 1400);
    let mut cap = Capture::start(&t.a, &t.tap_a, "icmp");
    let out = scapy(
        &t.a,
        r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 3)  # IP_MTU_DISCOVER = IP_PMTUDISC_PROBE: DF, no local check
s.bind(("", 42000))
s.sendto(b"x" * 1472, (sys.argv[1], 7000))
import time; time.sleep(0.5)
s.sendto(b"small", (sys.argv[1], 7000))
print("sent")
"#,
        &[B4],
    );
    assert_eq!(out.trim(), "sent");
    let pcap = cap.stop().to_path_buf();
    let rows = tshark(
        &pcap,
        "icmp.type == 3 && icmp.code == 4",
        &["ip.dst", "icmp.mtu", "udp.srcport", "icmp.checksum.status"],
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0][0],
        format!("{A4},{B4}"),
        "to A, quoting A's own packet"
    );
    assert_eq!(rows[0][1], "1400", "the outside link's MTU");
    assert_eq!(rows[0][2], "42000", "untranslated source port in the quote");
    assert_eq!(rows[0][3], "1");
    // The small datagram went out through the mapping of port 42000.
    let rows = sessions(&t, &["port", "42000"]);
    assert!(!rows.is_empty(), "the mapping is there: {rows:?}");
}

#[test]
fn out_of_order_fragments_are_translated_and_reassemble_at_the_far_end() {
    // RFC 4787 REQ-14: fragments of a translated flow, arriving last first, all leave with
    // the external address (the first one with the mapped port) and B reassembles them; the
    // fragmented answer comes back translated to A.
    let t = TwoHosts::new(NAT, 1500);
    let server = t.b.spawn(&[
        "python3",
        "-c",
        "import socket\n\
         s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 7000)); s.settimeout(10)\n\
         d,p=s.recvfrom(10000); s.sendto(b'%d:' % len(d) + d, p); print(len(d), p[0])\n",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    // Warm caches: tern holds only 3 packets per neighbour it is still resolving.
    assert!(ping(&t.a, &["-c", "1", "-W", "2", B4]).contains("1 received"));
    let mut cap = Capture::start(&t.b, &t.tap_b, "ip");
    let out = scapy(
        &t.a,
        r#"
import socket, sys
from scapy.all import IP, UDP, Raw, fragment, send, conf
conf.verb = 0
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("", 43000)); rx.settimeout(4)
frags = fragment(IP(src=sys.argv[2], dst=sys.argv[1], id=777)/UDP(sport=43000, dport=7000)/Raw(b"y" * 3000), fragsize=1000)
send(list(reversed(frags)))
d, p = rx.recvfrom(10000)
print(len(frags), d[:5].decode(), len(d), p[0])
"#,
        &[B4, A4],
    );

    assert_eq!(
        out.trim(),
        format!("4 3000: 3005 {B4}"),
        "sent reversed, answered whole"
    );
    let served = server.wait_with_output().expect("server");
    assert_eq!(
        String::from_utf8_lossy(&served.stdout).trim(),
        format!("3000 {X}"),
        "B reassembled 3000 bytes from the external address"
    );
    let pcap = cap.stop().to_path_buf();
    let rows = tshark(
        &pcap,
        "ip.dst == 203.0.113.2 && (ip.flags.mf == 1 || ip.frag_offset > 0)",
        &["ip.src", "ip.frag_offset", "ip.checksum.status"],
    );
    assert_eq!(rows.len(), 4, "four fragments reached B: {rows:?}");
    assert!(
        rows.iter().all(|r| r[0] == X && r[2] == "1"),
        "every fragment translated, header checksums good: {rows:?}"
    );
    assert!(
        t.tern.ctl(&["show", "counters"])["events"]["nat_fragment_released"].as_u64() >= Some(1)
    );
}

/// A Linux router with nftables masquerade in place of tern: A — G — B with the same
/// addresses as [`TwoHosts`] (G's outside address is X).
struct KernelNat {
    a: Netns,
    b: Netns,
    g: Netns,
    tap_b: String,
}

impl KernelNat {
    fn new() -> KernelNat {
        let (a, b, g) = (Netns::new("ka"), Netns::new("kb"), Netns::new("kg"));
        let (ga, gb) = (unique("kga"), unique("kgb"));
        let (ta, tb) = (unique("kta"), unique("ktb"));
        veth(&g, &ga, &a, &ta, 1);
        veth(&g, &gb, &b, &tb, 1);
        g.ok(&["ip", "link", "set", &ga, "up"]);
        g.ok(&["ip", "link", "set", &gb, "up"]);
        g.ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", &ga]);
        g.ok(&["ip", "addr", "add", "203.0.113.1/24", "dev", &gb]);
        g.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        g.ok(&[
            "nft",
            &format!(
                "add table ip nat; \
                 add chain ip nat post {{ type nat hook postrouting priority 100; }}; \
                 add rule ip nat post oifname {gb} masquerade"
            ),
        ]);
        host(
            &a,
            &ta,
            "192.0.2.2/24",
            "2001:db8:a::2/64",
            Some((TERN_A4, TERN_A6)),
            1500,
        );
        host(&b, &tb, "203.0.113.2/24", "2001:db8:b::2/64", None, 1500);
        KernelNat { a, b, g, tap_b: tb }
    }
}

/// The same stimuli through one gateway: what B saw of A's UDP (source address and port,
/// for two destinations from one socket) and what an unsolicited SYN to the outside
/// address got back within 3 s.
fn nat_behaviour(a: &Netns, b: &Netns, tap_b: &str) -> (Vec<String>, String) {
    let mut cap = Capture::start(b, tap_b, "udp or tcp or icmp");
    let out = scapy(
        a,
        r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", 44000))
for port in (7000, 7001):
    s.sendto(b"x", (sys.argv[1], port))
print("sent")
"#,
        &[B4],
    );
    assert_eq!(out.trim(), "sent");
    // An unsolicited SYN from B to X:44001 (nothing inside asked for it).
    let syn = scapy(
        b,
        r#"
import sys
from scapy.all import IP, TCP, sr1, conf
conf.verb = 0
r = sr1(IP(dst=sys.argv[1])/TCP(sport=45000, dport=44001, flags="S"), timeout=3)
if r is None: print("nothing")
elif r.haslayer(TCP) and r[TCP].flags & 0x04: print("rst")
elif r.haslayer("ICMP"): print("icmp %d/%d" % (r["ICMP"].type, r["ICMP"].code))
else: print("other")
"#,
        &[X],
    );
    let pcap = cap.stop().to_path_buf();
    let udp: Vec<String> = tshark(
        &pcap,
        "!icmp && (udp.dstport == 7000 || udp.dstport == 7001)",
        &["ip.src", "udp.srcport"],
    )
    .into_iter()
    .map(|r| r.join(":"))
    .collect();
    (udp, syn.trim().to_string())
}

#[test]
fn side_by_side_with_linux_nftables_masquerade() {
    let t = TwoHosts::new(NAT, 1500);
    let (tern_udp, tern_syn) = nat_behaviour(&t.a, &t.b, &t.tap_b);
    let k = KernelNat::new();
    let (kernel_udp, kernel_syn) = nat_behaviour(&k.a, &k.b, &k.tap_b);

    // Where they must agree: the outside sees the external address, the inside port is
    // kept when free, and one inside socket has one external port for both destinations
    // (endpoint-independent mapping, RFC 4787 REQ-1).
    let expected = vec![format!("{X}:44000"), format!("{X}:44000")];
    assert_eq!(tern_udp, expected, "tern");
    assert_eq!(kernel_udp, expected, "kernel");

    // Where tern follows RFC 5382 REQ-4 and the kernel does not: an unsolicited SYN is held
    // silently for 6 s by tern (nothing within 3 s), the kernel answers with a RST at once.
    assert_eq!(tern_syn, "nothing", "tern holds an unsolicited SYN");
    assert_eq!(kernel_syn, "rst", "the kernel resets it immediately");

    // And the UDP mapping timer: RFC 4787 REQ-5 wants at least 120 s (tern: 300 s); the
    // kernel drops an unreplied UDP entry after nf_conntrack_udp_timeout.
    let kernel_udp_timeout: u64 =
        k.g.ok(&["sysctl", "-n", "net.netfilter.nf_conntrack_udp_timeout"])
            .trim()
            .parse()
            .expect("a number");
    assert!(kernel_udp_timeout < 120, "kernel: {kernel_udp_timeout} s");
    let shown = t.tern.ctl(&["show", "nat"]);
    assert_eq!(shown["timeouts_s"]["udp"], 300, "{shown}");
}

#[test]
fn an_icmp_error_neither_kills_nor_moves_the_mapping() {
    // RFC 5508 §2.2 / RFC 4787 REQ-11: an ICMP error about a flow is translated to the
    // inside host, but the mapping and its session stay: the next datagram from the same
    // socket leaves from the same external port.
    let t = TwoHosts::new(NAT, 1500);
    let mut at_a = Capture::start(&t.a, &t.tap_a, "icmp");
    let mut at_b = Capture::start(&t.b, &t.tap_b, "udp and not icmp");
    let out = scapy(
        &t.a,
        r#"
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("", 46000))
s.sendto(b"first", (sys.argv[1], 7009))   # closed: B answers port unreachable
time.sleep(0.5)
s.sendto(b"second", (sys.argv[1], 7009))
time.sleep(0.3)
print("sent")
"#,
        &[B4],
    );
    assert_eq!(out.trim(), "sent");
    let at_a = at_a.stop().to_path_buf();
    let at_b = at_b.stop().to_path_buf();
    let errors = tshark(
        &at_a,
        "icmp.type == 3 && icmp.code == 3",
        &["ip.dst", "udp.srcport", "icmp.checksum.status"],
    );
    assert!(!errors.is_empty(), "the error reached A");
    assert!(
        errors
            .iter()
            .all(|r| r[0] == format!("{A4},{B4}") && r[1] == "46000" && r[2] == "1"),
        "translated to A, quoting A's own port, checksum good: {errors:?}"
    );
    let sources: Vec<String> = tshark(&at_b, "udp.dstport == 7009", &["ip.src", "udp.srcport"])
        .into_iter()
        .map(|r| r.join(":"))
        .collect();
    assert_eq!(
        sources,
        [format!("{X}:46000"), format!("{X}:46000")],
        "both datagrams from the same external port"
    );
    assert!(
        !sessions(&t, &["port", "46000"]).is_empty(),
        "the session lives on"
    );
}

#[test]
fn tcp_simultaneous_open_through_the_nat() {
    // RFC 5382 REQ-2/REQ-4: B connects to A's (future) external endpoint first — its SYN is
    // held — then A connects out from that port; tern drops the held SYN silently, and the
    // two SYNs crossing make one connection (TCP simultaneous open).
    let t = TwoHosts::new(NAT, 1500);
    let b_side = t.b.spawn(&[
        "python3",
        "-c",
        &format!(
            "import socket\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{B4}', 47001)); s.settimeout(15)\n\
             s.connect(('{X}', 47000)); s.sendall(b'from b'); print(s.recv(100).decode())\n"
        ),
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let a_side = t.a.ok(&[
        "python3",
        "-c",
        &format!(
            "import socket\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{A4}', 47000)); s.settimeout(15)\n\
             s.connect(('{B4}', 47001)); s.sendall(b'from a'); print(s.recv(100).decode())\n"
        ),
    ]);
    let b_out = b_side.wait_with_output().expect("b");
    assert_eq!(a_side.trim(), "from b", "A got B's data");
    assert_eq!(
        String::from_utf8_lossy(&b_out.stdout).trim(),
        "from a",
        "B got A's data: {}",
        String::from_utf8_lossy(&b_out.stderr)
    );
    // One session, A's, mapped to X:47000 (closing now: both ends have sent their FIN).
    let rows = sessions(&t, &["port", "47000"]);
    assert!(
        rows.len() == 1
            && rows[0]["orig_src"] == format!("{A4}:47000")
            && rows[0]["reply_dst"] == format!("{X}:47000"),
        "{rows:?}"
    );
    // Past the 6 s hold: the held SYN was dropped silently when A's SYN went out, so no
    // ICMP 3/3 ever follows.
    std::thread::sleep(Duration::from_millis(6500));
    let events = &t.tern.ctl(&["show", "counters"])["events"];
    assert!(
        events["nat_held"].as_u64() >= Some(1),
        "B's first SYN was held: {events}"
    );
    assert_eq!(
        events["nat_syn_answered"], 0,
        "and never answered with ICMP: {events}"
    );
}

/// Whether `show nat` says backend `backend` of frontend `svc` is up.
fn backend_up(t: &TwoHosts, backend: &str) -> Option<bool> {
    let rules = t.tern.ctl(&["show", "nat"]);
    rules["frontends"]
        .as_array()?
        .iter()
        .filter(|f| f["name"] == "svc")
        .flat_map(|f| f["backends"].as_array().cloned().unwrap_or_default())
        .find(|b| b["backend"] == backend)?["up"]
        .as_bool()
}

/// Polls until backend `backend` is in state `up` (at most 10 s).
fn wait_backend(t: &TwoHosts, backend: &str, up: bool) {
    let start = Instant::now();
    while backend_up(t, backend) != Some(up) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{backend} not {} after 10 s: {}",
            if up { "up" } else { "down" },
            t.tern.ctl(&["show", "nat"])
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A TCP service on A at `port` that answers every connection with its port, for 30 s.
fn port_server(t: &TwoHosts, port: u16) -> KillOnDrop {
    KillOnDrop(t.a.spawn(&[
        "python3",
        "-c",
        &format!(
            "import socket, time\n\
             s=socket.create_server(('', {port})); s.settimeout(1); end=time.time()+30\n\
             while time.time() < end:\n\
             \x20   try: c,_=s.accept()\n\
             \x20   except socket.timeout: continue\n\
             \x20   c.sendall(b'{port}'); c.close()\n"
        ),
    ]))
}

#[test]
fn health_checks_take_a_dead_backend_out_and_put_it_back() {
    // tern in its own namespace (AF_XDP ports): its host interfaces carry the checks.
    // The first line lands in [control]: the metrics endpoint, in tern's namespace.
    let extra = format!(
        "metrics = \"127.0.0.1:9464\"\n\
         {NAT}\n[[nat.forward]]\nname = \"svc\"\nproto = \"tcp\"\nexternal = \"{X}:5000\"\n\
         backends = [\"{A4}:5001\", \"{A4}:5002\"]\ncheck = \"tcp\"\ncheck_interval_ms = 200\n\
         check_timeout_ms = 150\ncheck_fall = 2\ncheck_rise = 2\n"
    );
    let t = TwoHosts::with(Ports::AfXdp, &extra, 1500);
    let (one, two) = (format!("{A4}:5001"), format!("{A4}:5002"));
    let _first = port_server(&t, 5001);
    let second = port_server(&t, 5002);
    std::thread::sleep(Duration::from_millis(500));
    wait_backend(&t, &one, true);
    wait_backend(&t, &two, true);

    // The second service stops: its connects are refused, and the checks take it out.
    drop(second);
    wait_backend(&t, &two, false);
    assert_eq!(backend_up(&t, &one), Some(true));
    // Every new connection to the frontend now lands on the first backend.
    let answers = scapy(
        &t.b,
        r#"
import socket, sys
seen = []
for i in range(20):
    c = socket.create_connection((sys.argv[1], 5000), timeout=3)
    seen.append(c.recv(10).decode()); c.close()
print(" ".join(seen))
"#,
        &[X],
    );
    let answers: Vec<&str> = answers.split_whitespace().collect();
    assert_eq!(answers.len(), 20, "{answers:?}");
    assert!(answers.iter().all(|a| *a == "5001"), "{answers:?}");
    // Prometheus sees the same: the backend out of service, the sessions made.
    let dut = t.dut.as_ref().expect("tern's namespace");
    let metrics = dut.http_get("127.0.0.1:9464", "/metrics").expect("metrics");
    let out = format!("tern_nat_backend_up{{frontend=\"svc\",backend=\"{two}\"}} 0\n");
    assert!(metrics.contains(&out), "{metrics}");
    // Summed over the shards (one per worker).
    let created: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("tern_nat_sessions_created_total{shard="))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(created >= 20, "{metrics}");

    // It comes back: after two good checks it is in again.
    let _second = port_server(&t, 5002);
    wait_backend(&t, &two, true);
}

/// RFC 6888 REQ-4 and the port hold-down: one inside host flooding SYNs at a closed port
/// (the remote answers each with a reset) must not take the table or the external ports
/// from another. With capacity 1024 the flood keeps the table full; early drop takes the
/// flood's refused sessions, whose ports go back at once (no remote ever answered on
/// them), and the default port quota caps what the flooder holds.
#[test]
fn a_syn_flood_from_one_inside_host_leaves_another_able_to_connect_at_once() {
    let t = TwoHosts::new(&format!("{NAT}capacity = 1024\n"), 1500);
    add_inside_addresses(&t, 10..12);
    let server = t.b.spawn(&[
        "python3",
        "-c",
        "import socket\n\
         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', 5001)); s.listen(64); s.settimeout(30)\n\
         while True:\n    c,_=s.accept(); c.sendall(c.recv(100)); c.close()\n",
    ]);
    let _server = KillOnDrop(server);
    // SYNs from 192.0.2.10 to B's closed port 80, every source port in turn, for 8 s.
    let flood = t.a.spawn(&[
        "/usr/bin/python3",
        "-c",
        r#"
import socket, struct, sys, time
src, dst = socket.inet_aton("192.0.2.10"), socket.inet_aton(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
def fold(x):
    while x >> 16: x = (x & 0xffff) + (x >> 16)
    return x
# The TCP checksum without the source port, then one add per packet.
base = sum(struct.unpack("!4H", src + dst)) + 6 + 20
base += 80 + 0x5002 + 65535
sent, end = 0, time.time() + 8
while time.time() < end:
    for port in range(1024, 65536, 1):
        c = 0xffff & ~fold(base + port)
        tcp = struct.pack("!HHIIHHHH", port, 80, 1, 0, 0x5002, 65535, c, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src, dst)
        s.sendto(ip + tcp, (sys.argv[1], 0)); sent += 1
        if sent % 4096 == 0 and time.time() > end: break
print(sent)
"#,
        B4,
    ]);
    // Not killed on a failure here: it stops by itself, and A's namespace ends it too.
    std::thread::sleep(Duration::from_secs(2));
    // Meanwhile the other host connects, one connection after another, each given 2 s.
    let out = scapy(
        &t.a,
        r#"
import socket, sys, time
ok, worst = 0, 0.0
for i in range(20):
    s = socket.socket(); s.bind(("192.0.2.11", 0)); s.settimeout(2)
    start = time.time()
    try:
        s.connect((sys.argv[1], 5001)); s.sendall(b"x%d" % i)
        ok += s.recv(10) == b"x%d" % i
    except OSError:
        pass
    worst = max(worst, time.time() - start); s.close()
print(ok, round(worst, 3))
"#,
        &[B4],
    );
    let flood_out = flood.wait_with_output().expect("flood");
    let flood_out = String::from_utf8_lossy(&flood_out.stdout).to_string();
    let conntrack = t.tern.ctl(&["show", "conntrack", "summary"]);
    let c = t.tern.ctl(&["show", "counters"]);
    let mut words = out.split_whitespace();
    assert_eq!(
        words.next(),
        Some("20"),
        "every connection of the second host succeeded during the flood: {out}; \
         flood sent {flood_out}; {conntrack}; {}",
        c["drops"]
    );
    let flood_sent: u64 = flood_out.trim().parse().unwrap_or(0);
    assert!(flood_sent > 20_000, "the flood ran: {flood_sent} SYNs");
    let early = shard_sum(&conntrack, "early_dropped");
    assert!(early > 1000, "the flood kept the table full: {conntrack}");
}

/// Two workers (multi-queue TAP, or AF_XDP with a queue per worker): 16 pairs of inside
/// hosts reach each other through their external mappings (hairpin, RFC 4787 REQ-9). An
/// inside host's home shard is a hash of its address with the process's random seed, so
/// about half the pairs have their homes on different shards (all 16 on one: 2⁻¹⁶). Each
/// host first shows B its mapping; the peer must then see exactly that endpoint (one
/// mapping per inside endpoint across shards, REQ-1 and REQ-9a), and the answer must come
/// back from the peer's mapping.
fn hairpin_between_inside_hosts_on_two_workers_keeps_one_mapping_per_endpoint(ports: Ports) {
    let t = TwoHosts::build(ports, &format!("[dataplane]\nworkers = 2\n{NAT}"), 1500, 2);
    add_inside_addresses(&t, 10..42);
    let server = t.b.spawn(&[
        "python3",
        "-c",
        "import socket\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',7000)); s.settimeout(20)\n\
         while True:\n d,p=s.recvfrom(100); s.sendto(('%s:%d' % p).encode(), p)\n",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let out = scapy(
        &t.a,
        r#"
import socket, sys
B, X = sys.argv[1], sys.argv[2]
def ask(s, to):
    for _ in range(20):
        s.sendto(b"hello", to)
        try:
            return s.recvfrom(100)
        except socket.timeout:
            pass
    return (b"", None)
for k in range(16):
    one = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); one.bind(("192.0.2.%d" % (10 + 2 * k), 5000)); one.settimeout(0.3)
    two = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); two.bind(("192.0.2.%d" % (11 + 2 * k), 6000)); two.settimeout(0.3)
    e1 = ask(one, (B, 7000))[0].decode()
    e2 = ask(two, (B, 7000))[0].decode()
    host, port = e2.split(":") if ":" in e2 else (X, "0")
    got, seen = b"", None
    for _ in range(20):
        one.sendto(b"ping", (host, int(port)))
        try:
            got, seen = two.recvfrom(100); break
        except socket.timeout:
            pass
    back, back_from = b"", None
    if seen:
        for _ in range(20):
            two.sendto(b"pong", seen)
            try:
                back, back_from = one.recvfrom(100); break
            except socket.timeout:
                pass
    fmt = lambda a: "%s:%d" % a if a else "-"
    print(k, e1, e2, got.decode(), fmt(seen), back.decode(), fmt(back_from))
"#,
        &[B4, X],
    );
    drop(server);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split(' ').collect()).collect();
    assert_eq!(rows.len(), 16, "{out}");
    for r in &rows {
        assert!(
            r[1].starts_with(&format!("{X}:")),
            "B saw the first host's mapping: {r:?}"
        );
        assert_eq!(
            (r[3], r[4]),
            ("ping", r[1]),
            "the peer saw the sender's one mapping: {r:?}"
        );
        assert_eq!(
            (r[5], r[6]),
            ("pong", r[2]),
            "the answer came from the peer's mapping: {r:?}"
        );
    }
    let summary = t.tern.ctl(&["show", "conntrack", "summary"]);
    let shards = summary["shards"].as_array().expect("shards");
    let mappings: u64 = shards.iter().filter_map(|s| s["mappings"].as_u64()).sum();
    assert_eq!(mappings, 32, "one mapping per inside endpoint: {summary}");
    // Some pairs had their homes on different shards: a host's flow to B is on its home.
    let listed = t
        .tern
        .ctl(&["show", "conntrack", "proto", "udp", "port", "7000"]);
    let home: std::collections::HashMap<String, u64> = listed["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|r| {
            let host = r["orig_src"].as_str()?.split(':').next()?.to_string();
            Some((host, r["shard"].as_u64()?))
        })
        .collect();
    let crossing = (0..16)
        .filter(|k| {
            let (one, two) = (
                format!("192.0.2.{}", 10 + 2 * k),
                format!("192.0.2.{}", 11 + 2 * k),
            );
            home.get(&one)
                .is_some_and(|s| home.get(&two).is_some_and(|t| s != t))
        })
        .count();
    assert!(
        crossing > 0,
        "no pair had its homes on different shards: {home:?}"
    );
}

/// The NAT between hosts with the kernel's default offloads (their TCP and UDP leave with
/// partial checksums): A → B by SNAT, B → A by forwards of X's TCP 5001 and UDP 5002 to A.
/// Every datagram and every byte arrives intact both ways; the incremental checksum update
/// of the translation must start from a finished sum (on AF_XDP tern finishes it first).
fn udp_of_six_sizes_and_100_mb_of_tcp_both_ways_through_the_nat_between_offloading_hosts(
    ports: Ports,
) {
    let forward = |name: &str, proto: &str, port: u16| {
        format!(
            "[[nat.forward]]\nname = \"{name}\"\nproto = \"{proto}\"\n\
             external = \"{X}:{port}\"\nbackends = [\"{A4}:{port}\"]\n"
        )
    };
    let extra = format!(
        "{NAT}\n{}{}",
        forward("tcp-in", "tcp", 5001),
        forward("udp-in", "udp", 5002)
    );
    let t = TwoHosts::with(ports, &extra, 1500);
    let sizes = [0, 1, 17, 200, 1000, 1472];
    for (from, to, addr, what) in [
        (&t.a, &t.b, B4, "A->B (SNAT)"),
        (&t.b, &t.a, X, "B->A (DNAT)"),
    ] {
        assert_udp_and_tcp_intact(from, to, addr, &sizes, what);
    }
}
