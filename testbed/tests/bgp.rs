//! BGP interop: tern's sessions against BIRD 2 started by the tests, in the two-host
//! topology (tern in its own namespace with AF_XDP ports, so its host interfaces carry the
//! sessions):
//!
//! ```text
//!  A: BIRD 192.0.2.2 / 2001:db8:a::2, AS 65001 ── tern AS 65000 ── B 203.0.113.2
//!     198.18.5.1, 2001:db8:5::1 on lo (announced)
//! ```

use std::time::Duration;

use serde_json::Value;
use testbed::bird::Bird;
use testbed::{eventually, ping, Ports, TwoHosts};

const LONG: Duration = Duration::from_secs(30);

/// Where tern serves Prometheus metrics (in its own namespace).
const METRICS: &str = "127.0.0.1:9464";

/// tern's `[bgp]` with one peer per family at A; `peer` is added to each peer. The first
/// line lands in `[control]`: the metrics endpoint.
fn tern_bgp(peer: &str) -> String {
    format!(
        "metrics = \"{METRICS}\"\n[bgp]\nrouter_id = \"192.0.2.1\"\nlocal_as = 65000\n\
         announce = [\"198.18.100.0/24\", \"2001:db8:100::/48\"]\n\
         [[bgp.peer]]\nname = \"a4\"\naddress = \"192.0.2.2\"\nremote_as = 65001\nimport = \"all\"\n{peer}\n\
         [[bgp.peer]]\nname = \"a6\"\naddress = \"2001:db8:a::2\"\nremote_as = 65001\nimport = \"all\"\n{peer}\n"
    )
}

/// BIRD at A: statics for its loopback networks, a session per family to tern.
fn bird_config(tern_as: u32, session: &str) -> String {
    format!(
        "router id 192.0.2.2;\nprotocol device {{}}\n\
         protocol static s4 {{ ipv4; route 198.18.5.0/24 via 192.0.2.2; }}\n\
         protocol static s6 {{ ipv6; route 2001:db8:5::/48 via 2001:db8:a::2; }}\n\
         protocol bgp tern4 {{ local 192.0.2.2 as 65001; neighbor 192.0.2.1 as {tern_as}; {session} ipv4 {{ import all; export all; }}; }}\n\
         protocol bgp tern6 {{ local 2001:db8:a::2 as 65001; neighbor 2001:db8:a::1 as {tern_as}; {session} ipv6 {{ import all; export all; }}; }}\n"
    )
}

/// The two hosts with tern configured by `tern_bgp(tern_peer)`, and A's loopback
/// addresses 198.18.`n`.1 and 2001:db8:`n`::1 in the networks A's daemon announces.
fn bgp_hosts(tern_peer: &str, n: u8) -> TwoHosts {
    let net = TwoHosts::with(Ports::AfXdp, &tern_bgp(tern_peer), 1500);
    net.a.ok(&["ip", "link", "set", "lo", "up"]);
    net.a.ok(&[
        "ip",
        "addr",
        "add",
        &format!("198.18.{n}.1/32"),
        "dev",
        "lo",
    ]);
    let v6 = format!("2001:db8:{n}::1/128");
    net.a.ok(&["ip", "-6", "addr", "add", &v6, "dev", "lo"]);
    net
}

fn setup(tern_peer: &str, bird_session: &str) -> (TwoHosts, Bird) {
    let net = bgp_hosts(tern_peer, 5);
    let bird = Bird::start(&net.a, &bird_config(65000, bird_session));
    (net, bird)
}

fn neighbor(net: &TwoHosts, name: &str) -> Value {
    net.tern.ctl(&["show", "bgp", "neighbors", name])["neighbors"][0].clone()
}

fn established(net: &TwoHosts, name: &str) -> bool {
    neighbor(net, name)["state"] == "Established"
}

fn has_route(net: &TwoHosts, prefix: &str) -> bool {
    let routes = net.tern.ctl(&["show", "bgp", "routes", prefix]);
    routes["routes"].as_array().is_some_and(|r| !r.is_empty())
}

fn fib_has(net: &TwoHosts, prefix: &str) -> bool {
    let text = net.tern.ctl(&["show", "routes"]).to_string();
    text.contains(prefix)
}

/// B pings `v4` and `v6` through tern without loss.
fn b_reaches(net: &TwoHosts, v4: &str, v6: &str) {
    let out = ping(&net.b, &["-c", "3", "-i", "0.2", "-W", "2", v4]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    let out = ping(&net.b, &["-6", "-c", "3", "-i", "0.2", "-W", "2", v6]);
    assert!(out.contains(" 0% packet loss"), "{out}");
}

/// After a withdrawal of 198.18.`n`.0/24: it leaves the RIB and the FIB, B then gets net
/// unreachable for it, and the peer's IPv6 route 2001:db8:`n`::/48 stays.
fn withdrawn_and_unreachable(net: &TwoHosts, n: u8) {
    let v4 = format!("198.18.{n}.0/24");
    eventually(LONG, &format!("{v4} withdrawn"), || !has_route(net, &v4));
    assert!(!fib_has(net, &v4));
    let out = ping(&net.b, &["-c", "1", "-W", "2", &format!("198.18.{n}.1")]);
    assert!(out.contains("Unreachable"), "{out}");
    assert!(has_route(net, &format!("2001:db8:{n}::/48")));
}

/// tern with one peer at A (192.0.2.2) that it expects in AS 65099; A's daemons are 65001.
fn tern_expecting_wrong_as() -> TwoHosts {
    TwoHosts::with(
        Ports::AfXdp,
        "[bgp]\nrouter_id = \"192.0.2.1\"\nlocal_as = 65000\n\
         [[bgp.peer]]\nname = \"a4\"\naddress = \"192.0.2.2\"\nremote_as = 65099\nimport = \"all\"\n",
        1500,
    )
}

fn sessions_up(net: &TwoHosts, bird: &Bird) {
    eventually(LONG, "both sessions Established", || {
        established(net, "a4") && established(net, "a6")
    });
    bird.wait_protocol("tern4", "Established", LONG);
    bird.wait_protocol("tern6", "Established", LONG);
}

/// tern connects (BIRD passive); IPv4 and IPv6 routes are learned and traffic follows them;
/// tern's own prefixes appear in BIRD; a withdrawal takes the route away again.
#[test]
fn bird_routes_learned_followed_and_withdrawn_tern_active() {
    let (net, bird) = setup("", "passive on;");
    sessions_up(&net, &bird);
    eventually(LONG, "both routes from BIRD", || {
        has_route(&net, "198.18.5.0/24") && has_route(&net, "2001:db8:5::/48")
    });
    b_reaches(&net, "198.18.5.1", "2001:db8:5::1");
    // The summary an operator reads, as vtysh prints it: the IPv4 peer gave one prefix.
    let summary = std::process::Command::new(testbed::tern_binary())
        .args(["ctl", "--socket"])
        .arg(&net.tern.socket)
        .args(["sh", "bgp", "sum"])
        .output()
        .expect("tern ctl");
    let text = String::from_utf8_lossy(&summary.stdout);
    assert!(text.contains("local AS number 65000"), "{text}");
    let peer: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("192.0.2.2 "))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        (peer.get(2), peer.last()),
        (Some(&"65001"), Some(&"1")),
        "{text}"
    );
    let path = &net.tern.ctl(&["show", "bgp", "routes", "198.18.5.0/24"])["routes"][0]["paths"][0];
    assert_eq!(path["as_path"], "65001", "{path}");
    assert_eq!(path["next_hop"], "192.0.2.2", "{path}");
    // The same facts as Prometheus metrics.
    let dut = net.dut.as_ref().expect("tern's namespace");
    let m = dut.http_get(METRICS, "/metrics").expect("metrics");
    for line in [
        "tern_bgp_peer_established{peer=\"a4\",address=\"192.0.2.2\"} 1\n",
        "tern_bgp_peer_prefixes{peer=\"a4\",address=\"192.0.2.2\",family=\"ipv4\"} 1\n",
        "tern_bgp_peer_prefixes{peer=\"a6\",address=\"2001:db8:a::2\",family=\"ipv6\"} 1\n",
        "tern_fib_routes_by_source{family=\"ipv4\",source=\"ebgp\"} 1\n",
        "# TYPE tern_drops_total counter\n",
    ] {
        assert!(m.contains(line), "{line} not in:\n{m}");
    }

    // Our announcements, AS path 65000, next hop self.
    eventually(LONG, "tern's prefixes in BIRD", || {
        let t = bird.cli("show route all");
        t.contains("198.18.100.0/24") && t.contains("2001:db8:100::/48")
    });
    let t = bird.cli("show route 198.18.100.0/24 all");
    assert!(t.contains("BGP.as_path: 65000"), "{t}");
    assert!(t.contains("BGP.next_hop: 192.0.2.1"), "{t}");

    // Withdraw: the route leaves the RIB and the FIB; B now gets net unreachable.
    bird.cli("disable s4");
    withdrawn_and_unreachable(&net, 5);
}

/// BIRD connects to tern (tern passive) and the route is learned.
#[test]
fn bird_connects_to_passive_tern() {
    let (net, bird) = setup("passive = true", "");
    sessions_up(&net, &bird);
    eventually(LONG, "route from BIRD", || has_route(&net, "198.18.5.0/24"));
    let n = neighbor(&net, "a4");
    assert_eq!(n["passive"], true);
    assert_eq!(n["remote_id"], "192.0.2.2");
}

/// An OPEN with the wrong AS: tern answers NOTIFICATION 2/2 (bad peer AS), and BIRD says so.
#[test]
fn wrong_peer_as_gets_bad_peer_as_notification() {
    let net = TwoHosts::with(
        Ports::AfXdp,
        "[bgp]\nrouter_id = \"192.0.2.1\"\nlocal_as = 65000\n\
         [[bgp.peer]]\nname = \"a4\"\naddress = \"192.0.2.2\"\nremote_as = 65002\n",
        1500,
    );
    let bird = Bird::start(
        &net.a,
        "router id 192.0.2.2;\nprotocol device {}\n\
         protocol bgp tern4 { local 192.0.2.2 as 65001; neighbor 192.0.2.1 as 65000; ipv4 { import all; export all; }; }\n",
    );
    let out = bird.wait_protocol("tern4", "Bad peer AS", LONG);
    assert!(out.contains("Received"), "{out}");
    let n = neighbor(&net, "a4");
    assert!(n["notifications_out"].as_u64().unwrap_or(0) >= 1, "{n}");
    assert_ne!(n["state"], "Established");
}

/// A peer frozen with SIGSTOP: at hold-time expiry tern sends 4/0, drops the session and
/// its routes.
#[test]
fn frozen_peer_dropped_at_hold_expiry() {
    let (net, bird) = setup("hold_time = 3", "passive on; hold time 3;");
    sessions_up(&net, &bird);
    eventually(LONG, "route from BIRD", || has_route(&net, "198.18.5.0/24"));
    bird.signal(libc::SIGSTOP);
    let frozen = std::time::Instant::now();
    eventually(Duration::from_secs(10), "the session to drop", || {
        !established(&net, "a4")
    });
    let after = frozen.elapsed();
    bird.signal(libc::SIGCONT);
    let n = neighbor(&net, "a4");
    assert!(
        n["last_error"].as_str().unwrap_or("").contains("4/0"),
        "{n}"
    );
    // Hold time 3 s: not before ~2 s (a keepalive may have just arrived), not much after 3.
    assert!(
        after >= Duration::from_secs(2) && after <= Duration::from_secs(6),
        "{after:?}"
    );
    assert!(!has_route(&net, "198.18.5.0/24"));
    assert!(!fib_has(&net, "198.18.5.0/24"));
    // The log says why, at info.
    let log = net.tern.log();
    assert!(
        log.lines()
            .any(|l| l.contains("BGP session down") && l.contains("peer=a4") && l.contains("4/0")),
        "{log}"
    );
}

/// tern's announcements leave BIRD's table when tern is unhealthy (an interface of it goes
/// down; an operator drains it) and come back when it is healthy again.
#[test]
fn announcements_follow_dataplane_health() {
    let (net, bird) = setup("", "passive on;");
    sessions_up(&net, &bird);
    let announced = || bird.cli("show route").contains("198.18.100.0/24");
    eventually(LONG, "tern's prefix in BIRD", announced);
    // B's end of tern's link goes down: tern's port loses its carrier.
    net.b.ok(&["ip", "link", "set", &net.tap_b, "down"]);
    eventually(LONG, "withdrawal after the link went down", || !announced());
    net.b.ok(&["ip", "link", "set", &net.tap_b, "up"]);
    eventually(LONG, "announcement after the link came back", announced);
    // The log tells the story: the port's link, then the health BGP acted on.
    let log = net.tern.log();
    let port = format!("port={}", net.tap_b);
    for state in ["state=down", "state=up"] {
        let said =
            |l: &&str| l.contains("link state changed") && l.contains(&port) && l.contains(state);
        assert!(log.lines().any(|l| said(&l)), "{state}: {log}");
    }
    let bgp = ["announcements withdrawn", "announcements restored"];
    assert!(bgp.iter().all(|said| log.contains(said)), "{log}");
    net.tern.ctl(&["bgp", "health", "down"]);
    eventually(LONG, "withdrawal on drain", || !announced());
    net.tern.ctl(&["bgp", "health", "up"]);
    eventually(LONG, "announcement after drain", announced);
}

/// Peers configured at runtime: `bgp neighbor add` brings a session up with BIRD and its
/// route is followed; `reset` ends it with Cease/4 (administrative reset, which BIRD
/// reports) and it comes back; `remove` ends it for good with Cease/3 (peer
/// de-configured) and takes its routes away.
#[test]
fn peer_added_reset_and_removed_at_runtime() {
    let net = TwoHosts::with(
        Ports::AfXdp,
        "[bgp]\nrouter_id = \"192.0.2.1\"\nlocal_as = 65000\n",
        1500,
    );
    net.a.ok(&["ip", "link", "set", "lo", "up"]);
    net.a
        .ok(&["ip", "addr", "add", "198.18.5.1/32", "dev", "lo"]);
    let bird = Bird::start(
        &net.a,
        "router id 192.0.2.2;\nprotocol device {}\n\
         protocol static s4 { ipv4; route 198.18.5.0/24 via 192.0.2.2; }\n\
         protocol bgp tern4 { local 192.0.2.2 as 65001; neighbor 192.0.2.1 as 65000; passive on; ipv4 { import all; export all; }; }\n",
    );
    let peer = "192.0.2.2";
    net.tern.ctl(&[
        "bgp", "neighbor", "add", peer, "as", "65001", "import", "all",
    ]);
    eventually(LONG, "the added peer Established", || {
        established(&net, peer)
    });
    eventually(LONG, "route from the added peer", || {
        has_route(&net, "198.18.5.0/24")
    });
    let out = ping(&net.b, &["-c", "2", "-i", "0.2", "-W", "2", "198.18.5.1"]);
    assert!(out.contains(" 0% packet loss"), "{out}");

    net.tern.ctl(&["bgp", "neighbor", "reset", peer]);
    bird.wait_protocol("tern4", "Administrative reset", LONG);
    eventually(LONG, "the session back after the reset", || {
        neighbor(&net, peer)["established_transitions"] == 2 && established(&net, peer)
    });
    eventually(LONG, "the route back after the reset", || {
        has_route(&net, "198.18.5.0/24")
    });

    net.tern.ctl(&["bgp", "neighbor", "remove", peer]);
    assert!(!has_route(&net, "198.18.5.0/24"));
    eventually(LONG, "the route out of the FIB", || {
        !fib_has(&net, "198.18.5.0/24")
    });
    let neighbors = net.tern.ctl(&["show", "bgp", "neighbors"]).to_string();
    assert!(!neighbors.contains(peer), "{neighbors}");
    // Cease/3 (peer de-configured), and BIRD is left waiting.
    let out = bird.wait_protocol("tern4", "Peer de-configured", LONG);
    assert!(!out.contains("Established"), "{out}");
}

/// BIRD restarts gracefully: tern keeps its routes (stale) and keeps forwarding, and after
/// BIRD's End-of-RIB the routes are fresh again; nothing was removed.
#[test]
fn graceful_restart_of_peer_keeps_forwarding() {
    let (net, mut bird) = setup("", "passive on; graceful restart on;");
    sessions_up(&net, &bird);
    eventually(LONG, "both routes from BIRD", || {
        has_route(&net, "198.18.5.0/24") && has_route(&net, "2001:db8:5::/48")
    });
    let fib_changes = || {
        let fib = net.tern.ctl(&["show", "fib"]);
        (
            fib["ipv4_winner_changes"].clone(),
            fib["ipv6_winner_changes"].clone(),
        )
    };
    // Traffic first, so that B's own neighbour entry (a FIB host route) is there before.
    b_reaches(&net, "198.18.5.1", "2001:db8:5::1");
    let before = fib_changes();
    bird.graceful_restart();
    // While BIRD is away, or back without its End-of-RIB, the route stays and forwards.
    let out = ping(&net.b, &["-c", "3", "-i", "0.2", "-W", "2", "198.18.5.1"]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    assert!(fib_has(&net, "198.18.5.0/24"));
    sessions_up(&net, &bird);
    eventually(LONG, "stale flag cleared", || {
        neighbor(&net, "a4")["stale"] == false
            && net.tern.ctl(&["show", "bgp", "routes", "198.18.5.0/24"])["routes"][0]["paths"][0]
                ["stale"]
                == false
    });
    assert!(fib_has(&net, "198.18.5.0/24"));
    // No change reached the FIB: the same next hop all along (BIRD's re-announcements are
    // offered again as they were, which changes no winner).
    assert_eq!(before, fib_changes(), "a route was removed or replaced");
    // It was a real restart: the session went down and came back.
    assert_eq!(neighbor(&net, "a4")["established_transitions"], 2);
    let out = ping(&net.b, &["-c", "2", "-i", "0.2", "-W", "2", "198.18.5.1"]);
    assert!(out.contains(" 0% packet loss"), "{out}");
}

/// A peer speaking raw bytes (Python, in A): a good UPDATE installs a route; the same
/// prefix with a malformed ORIGIN is treated as withdrawn (RFC 7606) and the session stays
/// up; an attribute length that overruns the message ends the session with NOTIFICATION
/// 3/1 (malformed attribute list).
#[test]
fn malformed_updates_from_raw_peer() {
    let net = TwoHosts::with(
        Ports::AfXdp,
        "[bgp]\nrouter_id = \"192.0.2.1\"\nlocal_as = 65000\n\
         [[bgp.peer]]\nname = \"raw\"\naddress = \"192.0.2.2\"\nremote_as = 65001\npassive = true\nimport = \"all\"\n",
        1500,
    );
    let script = r#"
import socket, struct, sys, time
def msg(kind, body): return b'\xff' * 16 + struct.pack('!HB', 19 + len(body), kind) + body
def read(s):
    h = b''
    while len(h) < 19:
        c = s.recv(19 - len(h))
        if not c: return None, None
        h += c
    n, kind = struct.unpack('!HB', h[16:19]); body = b''
    while len(body) < n - 19: body += s.recv(n - 19 - len(body))
    return kind, body
def update(attrs, nlri): return msg(2, struct.pack('!H', 0) + struct.pack('!H', len(attrs)) + attrs + nlri)
s = socket.create_connection(('192.0.2.1', 179), timeout=10)
caps = bytes([2, 6, 1, 4, 0, 1, 0, 1, 2, 6, 65, 4, 0, 0, 0xfd, 0xe9])
s.sendall(msg(1, struct.pack('!BHH4sB', 4, 65001, 30, bytes([192, 0, 2, 2]), len(caps)) + caps))
assert read(s)[0] == 1          # tern's OPEN
s.sendall(msg(4, b''))
assert read(s)[0] == 4          # tern's KEEPALIVE: Established
origin = bytes([0x40, 1, 1, 0]); path = bytes([0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe9]); nh = bytes([0x40, 3, 4, 192, 0, 2, 2])
nlri = bytes([24, 198, 18, 9])
s.sendall(update(origin + path + nh, nlri)); print('sent good', flush=True); sys.stdin.readline()
s.sendall(update(bytes([0x40, 1, 1, 7]) + path + nh, nlri)); print('sent bad origin', flush=True); sys.stdin.readline()
s.sendall(update(bytes([0x40, 1, 9, 0]), nlri))
while True:
    kind, body = read(s)
    if kind is None: print('closed without NOTIFICATION', flush=True); break
    if kind == 3: print('NOTIFICATION %d %d' % (body[0], body[1]), flush=True); break
"#;
    let mut child = net
        .a
        .command(&["python3", "-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("python3");
    use std::io::{BufRead, BufReader, Write};
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next_line = || lines.next().and_then(Result::ok).unwrap_or_default();
    let _guard = testbed::KillOnDrop(child);
    assert_eq!(next_line(), "sent good");
    eventually(LONG, "the good route", || has_route(&net, "198.18.9.0/24"));
    writeln!(stdin).expect("go on");
    assert_eq!(next_line(), "sent bad origin");
    eventually(LONG, "treat-as-withdraw", || {
        !has_route(&net, "198.18.9.0/24")
    });
    let n = neighbor(&net, "raw");
    assert_eq!(n["state"], "Established", "{n}");
    assert_eq!(n["treat_as_withdraw"], 1, "{n}");
    assert!(!fib_has(&net, "198.18.9.0/24"));
    writeln!(stdin).expect("go on");
    assert_eq!(next_line(), "NOTIFICATION 3 1");
    let n = neighbor(&net, "raw");
    assert_ne!(n["state"], "Established", "{n}");
}

/// gobgpd's TOML at A: AS 65001, one neighbor per family (tern's IPv4 and IPv6
/// addresses), `transport` added to each (e.g. passive mode).
fn gobgp_config(tern_as: u32, transport: &str) -> String {
    format!(
        "[global.config]\n  as = 65001\n  router-id = \"192.0.2.2\"\n\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"192.0.2.1\"\n    peer-as = {tern_as}\n\
         {transport}\
         [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"2001:db8:a::1\"\n    peer-as = {tern_as}\n\
         {transport}\
           [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv6-unicast\"\n"
    )
}

/// GoBGP connects to passive tern over IPv4 and IPv6: routes added to GoBGP's RIB are
/// learned and traffic follows them; tern's announcements of both families reach GoBGP;
/// a deletion withdraws the route and traffic then gets net unreachable.
#[test]
fn gobgp_connects_to_passive_tern() {
    use testbed::gobgp::GoBgp;
    let net = bgp_hosts("passive = true", 5);
    let gobgp = GoBgp::start(&net.a, &gobgp_config(65000, ""));
    eventually(LONG, "both sessions with GoBGP Established", || {
        established(&net, "a4") && established(&net, "a6")
    });
    assert_eq!(neighbor(&net, "a4")["passive"], true);
    let rib_add = |args: &[&str]| gobgp.cli(args).expect("gobgp rib add");
    rib_add(&["global", "rib", "add", "198.18.5.0/24", "-a", "ipv4"]);
    rib_add(&["global", "rib", "add", "2001:db8:5::/48", "-a", "ipv6"]);
    eventually(LONG, "both routes from GoBGP", || {
        has_route(&net, "198.18.5.0/24") && has_route(&net, "2001:db8:5::/48")
    });
    let path = &net.tern.ctl(&["show", "bgp", "routes", "198.18.5.0/24"])["routes"][0]["paths"][0];
    assert_eq!(path["next_hop"], "192.0.2.2", "{path}");
    assert_eq!(path["as_path"], "65001", "{path}");
    let path =
        &net.tern.ctl(&["show", "bgp", "routes", "2001:db8:5::/48"])["routes"][0]["paths"][0];
    assert_eq!(path["next_hop"], "2001:db8:a::2", "{path}");
    // The whole-table listing (streamed page by page) and its filters.
    let prefixes = |words: &[&str]| -> Vec<String> {
        net.tern.ctl(words)["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["prefix"].as_str().map(str::to_string))
            .collect()
    };
    let all = prefixes(&["show", "bgp", "routes"]);
    assert!(
        all.contains(&"198.18.5.0/24".to_string()) && all.contains(&"2001:db8:5::/48".to_string()),
        "{all:?}"
    );
    let v6 = prefixes(&["show", "bgp", "routes", "ipv6"]);
    assert!(
        v6.iter().all(|p| p.contains(':')) && v6.contains(&"2001:db8:5::/48".to_string()),
        "{v6:?}"
    );
    let from_a4 = prefixes(&["show", "bgp", "routes", "peer", "a4"]);
    assert!(
        from_a4.contains(&"198.18.5.0/24".to_string()),
        "{from_a4:?}"
    );
    let err = net
        .tern
        .try_ctl(&["show", "bgp", "routes", "ipv5"])
        .expect_err("filter");
    assert!(err.contains("ipv5"), "{err}");
    b_reaches(&net, "198.18.5.1", "2001:db8:5::1");

    eventually(LONG, "tern's prefixes in GoBGP", || {
        let rib = |family| {
            gobgp
                .cli(&["global", "rib", "-a", family])
                .unwrap_or_default()
        };
        rib("ipv4").contains("198.18.100.0/24") && rib("ipv6").contains("2001:db8:100::/48")
    });

    gobgp
        .cli(&["global", "rib", "del", "198.18.5.0/24", "-a", "ipv4"])
        .expect("gobgp rib del");
    withdrawn_and_unreachable(&net, 5);
}

/// tern connects to a passive GoBGP and learns its routes of both families; with the
/// wrong AS configured for GoBGP, tern answers its OPEN with NOTIFICATION 2/2 (Bad Peer
/// AS): tshark reads it on A's wire, and GoBGP's FSM leaves OpenConfirm for Idle (GoBGP
/// logs no code for a NOTIFICATION in that state).
#[test]
fn gobgp_passive_tern_connects_and_wrong_as() {
    use testbed::gobgp::GoBgp;
    let passive = "  [neighbors.transport.config]\n    passive-mode = true\n";
    let net = bgp_hosts("", 5);
    let gobgp = GoBgp::start(&net.a, &gobgp_config(65000, passive));
    eventually(LONG, "tern's sessions to GoBGP Established", || {
        established(&net, "a4") && established(&net, "a6")
    });
    assert_eq!(neighbor(&net, "a4")["passive"], false);
    gobgp
        .cli(&["global", "rib", "add", "198.18.5.0/24", "-a", "ipv4"])
        .expect("gobgp rib add");
    gobgp
        .cli(&["global", "rib", "add", "2001:db8:5::/48", "-a", "ipv6"])
        .expect("gobgp rib add");
    eventually(LONG, "both routes from GoBGP", || {
        has_route(&net, "198.18.5.0/24") && has_route(&net, "2001:db8:5::/48")
    });
    b_reaches(&net, "198.18.5.1", "2001:db8:5::1");
    drop(gobgp);
    drop(net);

    let net = tern_expecting_wrong_as();
    let mut cap = testbed::Capture::start(&net.a, &net.tap_a, "tcp port 179");
    let gobgp = GoBgp::start(&net.a, &gobgp_config(65000, ""));
    gobgp.wait_log(
        &["192.0.2.1", "new=BGP_FSM_IDLE old=BGP_FSM_OPENCONFIRM"],
        LONG,
    );
    let notifications = testbed::tshark(
        cap.stop(),
        "bgp.type == 3",
        &[
            "ip.src",
            "bgp.notify.major_error",
            "bgp.notify.minor_error_open",
        ],
    );
    let first = notifications.first().expect("a NOTIFICATION on the wire");
    assert_eq!(first, &["192.0.2.1", "2", "2"], "{notifications:?}");
    let n = neighbor(&net, "a4");
    assert!(n["notifications_out"].as_u64().unwrap_or(0) >= 1, "{n}");
    assert_ne!(n["state"], "Established", "{n}");
}

/// A slice of the RIS 2026 tables (every 100th prefix: ~10 k IPv4 + 2.5 k IPv6) from
/// BIRD: every route reaches tern's FIB, and a flow through tern loses nothing meanwhile.
/// The full table is `tern-bench bgp-load` (BENCHMARKS.md).
#[test]
fn table_slice_from_bird_loads_without_loss() {
    use testbed::bgp_load::{tern_load, Table};
    let table = Table::ris(100).expect("RIS tables");
    let load = tern_load(&table, Duration::from_secs(120)).expect("load");
    assert_eq!(load.fib_v4, table.v4.len() as u64, "{load:?}");
    assert_eq!(load.fib_v6, table.v6.len() as u64, "{load:?}");
    assert!(load.flow_sent > 100, "{load:?}");
    assert_eq!(load.flow_received, load.flow_sent, "{load:?}");
}

/// A slice of the RIS update streams (the first 20 000 of each) replayed as fast as TCP
/// takes it over a table slice: the FIB ends where the stream leads, tern's KEEPALIVEs keep
/// coming, the session stays up. The full stream is `tern-bench bgp-churn`.
#[test]
fn update_stream_slice_replayed() {
    use testbed::bgp_load::Table;
    use testbed::tables::ris_updates;
    let table = Table::ris(100).expect("RIS tables");
    let mut updates = ris_updates(false).expect("v4 updates");
    updates.truncate(20_000);
    let mut v6 = ris_updates(true).expect("v6 updates");
    v6.truncate(20_000);
    updates.extend(v6);
    let r = testbed::bgp_churn::replay(&table, &updates, Duration::from_secs(120)).expect("replay");
    assert_eq!(
        (r.fib_v4, r.fib_v6),
        (r.expected_v4, r.expected_v6),
        "{r:?}"
    );
    assert!(r.established_after, "{r:?}");
    assert_eq!(r.notification, None, "{r:?}");
    assert!(
        r.max_gap < Duration::from_secs(u64::from(r.hold_time)),
        "{r:?}"
    );
}

/// An ExaBGP `neighbor` block for tern's IPv4 or IPv6 address (one family per session),
/// with `routes` announced and `extra` settings.
fn exabgp_neighbor(v6: bool, routes: &str, extra: &str) -> String {
    let (tern, local, family) = if v6 {
        ("2001:db8:a::1", "2001:db8:a::2", "ipv6")
    } else {
        ("192.0.2.1", "192.0.2.2", "ipv4")
    };
    format!(
        "neighbor {tern} {{\n router-id 192.0.2.2;\n local-address {local};\n local-as 65001;\n peer-as 65000;\n {extra}\n\
           family {{ {family} unicast; }}\n api {{ processes [ control ]; receive {{ parsed; update; }} }}\n\
           static {{ {routes} }}\n}}\n"
    )
}

/// Both of ExaBGP's sessions with their routes.
fn exabgp_neighbors(v4_routes: &str, v6_routes: &str, extra: &str) -> String {
    exabgp_neighbor(false, v4_routes, extra) + &exabgp_neighbor(true, v6_routes, extra)
}

/// ExaBGP connects to tern (passive): IPv4 and IPv6 routes learned and followed; a route
/// with a malformed COMMUNITIES attribute (length 3) is treated as withdrawn (RFC 7606
/// §7.8) while the session stays up; tern's announcements reach ExaBGP; an API withdraw
/// removes the route and traffic gets net unreachable.
#[test]
fn exabgp_connects_to_passive_tern() {
    use testbed::exabgp::ExaBgp;
    let net = bgp_hosts("passive = true", 6);
    let exa = ExaBgp::start(
        &net.a,
        &exabgp_neighbors(
            "route 198.18.6.0/24 next-hop 192.0.2.2; \
             route 198.18.7.0/24 next-hop 192.0.2.2 attribute [0x08 0xc0 0x000102];",
            "route 2001:db8:6::/48 next-hop 2001:db8:a::2;",
            "",
        ),
        None,
    );
    eventually(LONG, "both sessions with ExaBGP Established", || {
        established(&net, "a4") && established(&net, "a6")
    });
    eventually(LONG, "ExaBGP's routes", || {
        has_route(&net, "198.18.6.0/24") && has_route(&net, "2001:db8:6::/48")
    });
    b_reaches(&net, "198.18.6.1", "2001:db8:6::1");
    // The malformed route: treat-as-withdraw, not a reset.
    assert!(!has_route(&net, "198.18.7.0/24"));
    assert!(established(&net, "a4"), "{}", exa.log());

    eventually(LONG, "tern's prefixes at ExaBGP", || {
        let r = exa.received();
        r.contains("198.18.100.0/24") && r.contains("2001:db8:100::/48")
    });

    exa.command("neighbor 192.0.2.1 withdraw route 198.18.6.0/24 next-hop 192.0.2.2");
    withdrawn_and_unreachable(&net, 6);
}

/// tern connects to a listening ExaBGP and learns its routes; with the wrong AS configured
/// for ExaBGP, tern answers its OPEN with NOTIFICATION 2/2 (Bad Peer AS).
#[test]
fn exabgp_passive_tern_connects_and_wrong_as() {
    use testbed::exabgp::ExaBgp;
    let net = bgp_hosts("", 6);
    let exa = ExaBgp::start(
        &net.a,
        &exabgp_neighbors(
            "route 198.18.6.0/24 next-hop 192.0.2.2;",
            "route 2001:db8:6::/48 next-hop 2001:db8:a::2;",
            "passive true;",
        ),
        Some("192.0.2.2 2001:db8:a::2"),
    );
    eventually(LONG, "tern's sessions to ExaBGP Established", || {
        established(&net, "a4") && established(&net, "a6")
    });
    eventually(LONG, "ExaBGP's routes", || {
        has_route(&net, "198.18.6.0/24") && has_route(&net, "2001:db8:6::/48")
    });
    let out = ping(&net.b, &["-c", "2", "-i", "0.2", "-W", "2", "198.18.6.1"]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    drop(exa);
    drop(net);

    let net = tern_expecting_wrong_as();
    let exa = ExaBgp::start(
        &net.a,
        &exabgp_neighbor(false, "", "passive true;"),
        Some("192.0.2.2"),
    );
    let line = exa.wait_log("Bad Peer AS", LONG);
    assert!(line.to_lowercase().contains("notification"), "{line}");
    let n = neighbor(&net, "a4");
    assert_ne!(n["state"], "Established", "{n}");
}

/// Two BIRD peers behind a switch at A announce the same prefix; with `multipath = 2` tern
/// installs one ECMP group over both next hops and spreads flows across them.
///
/// ```text
///  P1 192.0.2.2 ─┐
///                ├─ sw0 (a bridge in A) ── tern ── B: 64 UDP flows to 198.18.5.1
///  P2 192.0.2.3 ─┘   (both own 198.18.5.1 and announce 198.18.5.0/24)
/// ```
#[test]
fn ecmp_across_two_peers_spreads_flows() {
    let peer = |name: &str, addr: &str| {
        format!(
            "[[bgp.peer]]\nname = \"{name}\"\naddress = \"{addr}\"\nremote_as = 65001\nimport = \"all\"\n"
        )
    };
    let net = TwoHosts::with(
        Ports::AfXdp,
        &format!(
            "[bgp]\nrouter_id = \"192.0.2.1\"\nlocal_as = 65000\nmultipath = 2\n{}{}",
            peer("p1", "192.0.2.2"),
            peer("p2", "192.0.2.3")
        ),
        1500,
    );
    // A becomes a switch: its link to tern and one veth per peer on a bridge.
    net.a.ok(&["ip", "addr", "flush", "dev", &net.tap_a]);
    net.a.ok(&["ip", "link", "add", "sw0", "type", "bridge"]);
    net.a
        .ok(&["ip", "link", "set", &net.tap_a, "master", "sw0"]);
    net.a.ok(&["ip", "link", "set", "sw0", "up"]);
    let mut peers = Vec::new();
    for (i, addr) in ["192.0.2.2", "192.0.2.3"].into_iter().enumerate() {
        let ns = testbed::Netns::new("pp");
        let port = format!("p{i}");
        testbed::veth(&net.a, &port, &ns, "eth0", 1);
        net.a
            .ok(&["ip", "link", "set", &port, "master", "sw0", "up"]);
        ns.ok(&["ip", "link", "set", "eth0", "up"]);
        ns.ok(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ns.ok(&["ip", "route", "add", "default", "via", "192.0.2.1"]);
        ns.ok(&["ip", "addr", "add", "198.18.5.1/32", "dev", "lo"]);
        let bird = Bird::start(
            &ns,
            &format!(
                "router id {addr};\nprotocol device {{}}\n\
                 protocol static s4 {{ ipv4; route 198.18.5.0/24 via {addr}; }}\n\
                 protocol bgp tern4 {{ local {addr} as 65001; neighbor 192.0.2.1 as 65000; \
                   ipv4 {{ import none; export all; }}; }}\n"
            ),
        );
        peers.push((ns, bird));
    }
    eventually(LONG, "both sessions Established", || {
        established(&net, "p1") && established(&net, "p2")
    });
    eventually(LONG, "an ECMP route over both peers", || {
        let Ok(r) = net.tern.try_ctl(&["show", "route", "198.18.5.0/24"]) else {
            return false; // not learned yet
        };
        r["next_hop"]["type"] == "ecmp"
            && r["next_hop"]["members"]
                .as_array()
                .is_some_and(|m| m.len() == 2)
    });

    let received = |ns: &testbed::Netns| -> u64 {
        let out = ns.ok(&["cat", "/sys/class/net/eth0/statistics/rx_packets"]);
        out.trim().parse().unwrap_or(0)
    };
    // Both next hops resolved before the flood: tern holds only a few packets per
    // neighbour it is still resolving.
    for peer in ["192.0.2.2", "192.0.2.3"] {
        let out = ping(&net.b, &["-c", "1", "-W", "2", peer]);
        assert!(out.contains(" 0% packet loss"), "{out}");
    }
    let before: Vec<u64> = peers.iter().map(|(ns, _)| received(ns)).collect();
    // 64 flows (source ports), 20 datagrams each.
    let sent = testbed::scapy(
        &net.b,
        "import socket\n\
         for port in range(40000, 40064):\n\
         \x20s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20s.bind(('0.0.0.0', port))\n\
         \x20for _ in range(20): s.sendto(b'x' * 32, ('198.18.5.1', 9))\n\
         \x20s.close()\n\
         print('sent')\n",
        &[],
    );
    assert!(sent.contains("sent"), "{sent}");
    let got = || -> Vec<u64> {
        peers
            .iter()
            .zip(&before)
            .map(|((ns, _), b)| received(ns) - b)
            .collect()
    };
    let mut last = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while last.iter().sum::<u64>() < 1280 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        last = got();
    }
    let got = last;
    let total: u64 = got.iter().sum();
    assert!(total >= 1280, "every datagram arrives somewhere: {got:?}");
    // A flow hash over 64 flows puts well over 10% on each side.
    assert!(
        got.iter().all(|&n| n >= 128),
        "flows spread over both next hops: {got:?}"
    );
}

/// An MRT dump BIRD writes (`mrt dump`, TABLE_DUMP_V2) seeds tern's FIB with no session:
/// the IPv4 route keeps the dump's next hop, the IPv6 one takes the `next-hop` given at
/// load; traffic follows both; `bgp mrt clear` takes them away.
#[test]
fn mrt_dump_from_bird_seeds_the_fib() {
    let net = TwoHosts::with(Ports::AfXdp, &tern_bgp(""), 1500);
    net.a
        .ok(&["ip", "addr", "add", "198.18.5.1/32", "dev", "lo"]);
    net.a
        .ok(&["ip", "-6", "addr", "add", "2001:db8:5::1/128", "dev", "lo"]);
    // BIRD holds the routes with BGP attributes but has no session to tern.
    let bird = Bird::start(
        &net.a,
        "router id 192.0.2.2;\nprotocol device {}\n\
         protocol static s4 { ipv4; route 198.18.5.0/24 via \"lo\" { bgp_origin = ORIGIN_IGP; \
           bgp_path = prepend(+empty+, 65001); bgp_next_hop = 192.0.2.2; }; }\n\
         protocol static s6 { ipv6; route 2001:db8:5::/48 via \"lo\" { bgp_origin = ORIGIN_IGP; \
           bgp_path = prepend(+empty+, 65001); bgp_next_hop = 2001:db8:5::1; }; }\n",
    );
    let dir = std::env::temp_dir().join(testbed::unique("mrt-"));
    std::fs::create_dir_all(&dir).expect("dir");
    let dump = |table: &str| {
        let file = dir.join(format!("{table}.mrt"));
        bird.cli(&format!(
            "mrt dump table \"{table}\" to \"{}\"",
            file.display()
        ));
        eventually(LONG, "BIRD's MRT dump", || {
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 60)
        });
        file.display().to_string()
    };
    let (d4, d6) = (dump("master4"), dump("master6"));
    let loaded = net.tern.ctl(&["bgp", "mrt", "load", &d4]);
    assert_eq!(loaded["routes_ipv4"], 1, "{loaded}");
    // The dump's IPv6 next hop is not on-link for tern: replace it.
    let loaded = net
        .tern
        .ctl(&["bgp", "mrt", "load", &d6, "next-hop", "2001:db8:a::2"]);
    assert_eq!(loaded["routes_ipv6"], 1, "{loaded}");
    // A new load replaces the previous one.
    assert!(!has_route(&net, "198.18.5.0/24"));
    net.tern.ctl(&["bgp", "mrt", "load", &d4]);
    let path = &net.tern.ctl(&["show", "bgp", "routes", "198.18.5.0/24"])["routes"][0]["paths"][0];
    assert_eq!(path["peer"], "mrt", "{path}");
    assert_eq!(path["as_path"], "65001", "{path}");
    assert_eq!(path["next_hop"], "192.0.2.2", "{path}");
    eventually(LONG, "the seeded route in the FIB", || {
        fib_has(&net, "198.18.5.0/24")
    });
    let out = ping(&net.b, &["-c", "3", "-i", "0.2", "-W", "2", "198.18.5.1"]);
    assert!(out.contains(" 0% packet loss"), "{out}");
    let summary = net.tern.ctl(&["show", "bgp", "summary"]);
    assert_eq!(summary["mrt"]["routes_ipv4"], 1, "{summary}");

    net.tern.ctl(&["bgp", "mrt", "clear"]);
    eventually(LONG, "seeded route gone", || {
        !fib_has(&net, "198.18.5.0/24")
    });
    // A file that is not a dump is refused with its name, and seeds nothing.
    let err = net
        .tern
        .try_ctl(&["bgp", "mrt", "load", "/etc/hostname"])
        .expect_err("not MRT");
    assert!(err.contains("/etc/hostname"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
