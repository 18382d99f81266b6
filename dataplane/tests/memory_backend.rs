//! The whole router (workers, control plane) on memory ports: known-answer frames in,
//! frames out.

use std::time::{Duration, Instant};

use dataplane::config::Config;
use dataplane::router::Router;
use dataplane::wire::{self, arp, eth, ipv4};

const CONFIG: &str = r#"
[[interface]]
name = "m0"
backend = "memory"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
[[interface]]
name = "m1"
backend = "memory"
mac = "02:00:00:00:00:02"
addresses = ["203.0.113.1/24"]
[[neighbor]]
interface = "m1"
address = "203.0.113.2"
mac = "02:00:00:00:00:99"
[[tunnel]]
name = "g0"
kind = "gre"
local = "192.0.2.1"
remote = "192.0.2.2"
key = 5
[[tunnel]]
name = "i0"
kind = "ipip"
local = "192.0.2.1"
remote = "192.0.2.2"
"#;

const HOST: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

fn wait_for(port: &dataplane::io::memory::MemoryPort, what: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        for f in port.take_sent() {
            if what(&f) {
                return f;
            }
            seen.push(f);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("expected frame not sent; saw {} others", seen.len());
}

#[test]
fn arp_reply_forwarding_and_runt_on_memory_ports() {
    let config = Config::parse("test", CONFIG).expect("config");
    let router = Router::start(&config, false).expect("start");
    let (p0, p1) = (
        router.memory[0].clone().expect("memory"),
        router.memory[1].clone().expect("memory"),
    );

    // A runt, then an ARP request for tern's address.
    p0.inject(&[0xff; 10]);
    let mut req = vec![0u8; 60];
    eth::write(&mut req, &wire::BROADCAST, &HOST, eth::TYPE_ARP);
    arp::write(
        &mut req[eth::LEN..],
        &arp::Arp {
            op: arp::OP_REQUEST,
            sender_mac: HOST,
            sender_ip: "192.0.2.2".parse().expect("ip"),
            target_mac: [0; 6],
            target_ip: "192.0.2.1".parse().expect("ip"),
        },
    );
    p0.inject(&req);
    let reply = wait_for(&p0, |f| {
        eth::ethertype(f) == eth::TYPE_ARP
            && arp::parse(&f[eth::LEN..]).is_some_and(|a| a.op == arp::OP_REPLY)
    });
    let a = arp::parse(&reply[eth::LEN..]).expect("arp");
    assert_eq!(a.sender_mac, [2, 0, 0, 0, 0, 1]);
    assert_eq!(a.sender_ip.to_string(), "192.0.2.1");
    assert_eq!(
        (a.target_mac, a.target_ip.to_string()),
        (HOST, "192.0.2.2".to_string())
    );
    assert_eq!(eth::dst(&reply), HOST);

    // A UDP packet through to the static neighbour.
    let mut pkt = udp_frame(
        [2, 0, 0, 0, 0, 1],
        [192, 0, 2, 2],
        7,
        [203, 0, 113, 2],
        9,
        b"",
    );
    pkt.extend_from_slice(&[0; 4]); // Ethernet padding: must not be forwarded
    p0.inject(&pkt);
    let out = wait_for(&p1, |f| eth::ethertype(f) == eth::TYPE_IPV4);
    assert_eq!(out.len(), eth::LEN + 28, "padding trimmed");
    assert_eq!(eth::dst(&out), [2, 0, 0, 0, 0, 0x99]);
    assert_eq!(eth::src(&out), [2, 0, 0, 0, 0, 2]);
    assert_eq!(ipv4::ttl(&out[eth::LEN..]), 63);
    assert_eq!(
        wire::checksum(&out[eth::LEN..eth::LEN + 20]),
        0,
        "header checksum valid after the TTL update"
    );

    let counters = router.ctl(&["show", "counters"]).expect("counters");
    assert_eq!(counters["drops"]["runt"], 1, "{counters}");
    assert_eq!(counters["events"]["forwarded"], 1, "{counters}");
    let routes = router.ctl(&["show", "routes"]).expect("routes");
    assert!(
        routes["routes"]
            .as_array()
            .expect("list")
            .iter()
            .any(|r| r["prefix"] == "203.0.113.0/24" && r["source"] == "connected"),
        "{routes}"
    );
    router.stop();
}

#[test]
fn ctl_route_add_and_del() {
    let config = Config::parse("test", CONFIG).expect("config");
    let router = Router::start(&config, false).expect("start");
    router
        .ctl(&["route", "add", "198.51.100.0/24", "via", "203.0.113.2"])
        .expect("add");
    let routes = router.ctl(&["show", "routes"]).expect("routes");
    let r = routes["routes"]
        .as_array()
        .expect("list")
        .iter()
        .find(|r| r["prefix"] == "198.51.100.0/24")
        .cloned()
        .expect("installed");
    assert_eq!(r["source"], "static");
    assert_eq!(r["next_hop"]["mac"], "02:00:00:00:00:99");
    // An address: the longest prefix covering it, as `ip route get` answers.
    let got = router
        .ctl(&["show", "route", "198.51.100.77"])
        .expect("lpm");
    assert_eq!(got["prefix"], "198.51.100.0/24", "{got}");
    let got = router.ctl(&["show", "route", "203.0.113.9"]).expect("lpm");
    assert_eq!(
        (got["prefix"].as_str(), got["source"].as_str()),
        (Some("203.0.113.0/24"), Some("connected")),
        "{got}"
    );
    let err = router
        .ctl(&["show", "route", "198.18.0.1"])
        .expect_err("no route");
    assert!(err.contains("no route to 198.18.0.1"), "{err}");
    let err = router
        .ctl(&["show", "route", "198.51.0.0/16"])
        .expect_err("exact");
    assert!(err.contains("no route 198.51.0.0/16"), "{err}");
    let err = router
        .ctl(&["route", "add", "198.51.100.1/24", "via", "203.0.113.2"])
        .expect_err("host bits");
    assert!(err.contains("host bits"), "{err}");
    let err = router
        .ctl(&["route", "add", "198.51.0.0/16", "via", "10.9.9.9"])
        .expect_err("unreachable gw");
    assert!(err.contains("not on a connected network"), "{err}");
    router
        .ctl(&["route", "del", "198.51.100.0/24"])
        .expect("del");
    let routes = router.ctl(&["show", "routes"]).expect("routes");
    assert!(!routes["routes"]
        .as_array()
        .expect("list")
        .iter()
        .any(|r| r["prefix"] == "198.51.100.0/24"));
    router.stop();
}

/// `show routes` over more than one page: every route once, in prefix order, and the
/// filters (a prefix and what lies inside it, a source, a limit).
#[test]
fn route_listings_cross_pages_without_losing_or_repeating_a_route() {
    let config = Config::parse("test", CONFIG).expect("config");
    let router = Router::start(&config, false).expect("start");
    for i in 0..10_000u32 {
        let net = format!("{}/32", std::net::Ipv4Addr::from_bits(0xc612_0000 + i));
        router
            .ctl(&["route", "add", &net, "via", "203.0.113.2"])
            .expect("add");
    }
    let prefixes = |words: &[&str]| -> Vec<String> {
        router.ctl(words).expect("listing")["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["prefix"].as_str().map(str::to_string))
            .collect()
    };
    let statics = prefixes(&["show", "routes", "source", "static"]);
    assert_eq!(statics.len(), 10_000);
    let unique: std::collections::BTreeSet<&String> = statics.iter().collect();
    assert_eq!(unique.len(), 10_000, "no route twice");
    let inside = prefixes(&["show", "routes", "198.18.16.0/20", "longer"]);
    assert_eq!(inside.len(), 4096, "{:?}", inside.first());
    assert!(
        inside.iter().all(|p| p.starts_with("198.18.")),
        "{inside:?}"
    );
    assert_eq!(
        prefixes(&["show", "routes", "198.18.0.7/32"]),
        ["198.18.0.7/32"]
    );
    assert_eq!(prefixes(&["show", "routes", "limit", "3"]).len(), 3);
    let err = router
        .ctl(&["show", "routes", "source", "rip"])
        .expect_err("source");
    assert!(err.contains("not a source"), "{err}");
    router.stop();
}

/// Arbitrary and mutated frames: nothing panics (a panicking worker would stop
/// forwarding), everything is counted, and a good packet still goes through afterwards.
/// The same with NAT between the ports, and a port forward: the fuzz of the NAT path.
const NAT: &str = r#"
[nat]
inside = ["m0"]
outside = ["m1"]
capacity = 256
[[nat.forward]]
name = "fw"
proto = "udp"
external = "203.0.113.1:53"
backends = ["192.0.2.2:53", "192.0.2.3:53"]
"#;

#[test]
fn random_and_mutated_frames_never_stop_the_worker() {
    random_and_mutated_frames(CONFIG.to_string(), false);
}

#[test]
fn random_and_mutated_frames_through_nat_never_stop_the_worker() {
    random_and_mutated_frames(format!("{CONFIG}{NAT}"), true);
}

#[test]
fn random_and_mutated_frames_through_nat_on_two_workers_are_all_accounted() {
    random_and_mutated_frames(format!("[dataplane]\nworkers = 2\n{CONFIG}{NAT}"), true);
}

/// The accounting identity of `counters::PortCounts`, on every port: each received frame
/// has one outcome (`rx_packets = forwarded + punted + local + drops`), the port's drops
/// are the sum of its reasons, and the global reasons are the ports' plus tern's own.
fn assert_accounting(c: &serde_json::Value, ports: &[&str]) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let sum_reasons =
        |v: &serde_json::Value| -> u64 { v.as_object().map_or(0, |m| m.values().map(n).sum()) };
    let mut port_drops = 0;
    let mut tx_errors = 0;
    for name in ports {
        let p = &c["interfaces"][*name];
        let outcomes = n(&p["forwarded"]) + n(&p["punted"]) + n(&p["local"]) + n(&p["drops"]);
        assert_eq!(n(&p["rx_packets"]), outcomes, "{name}: rx = outcomes: {p}");
        assert_eq!(
            n(&p["drops"]),
            sum_reasons(&p["drop_reasons"]),
            "{name}: {p}"
        );
        port_drops += n(&p["drops"]);
        tx_errors += n(&p["tx_errors"]);
    }
    let originated = n(&c["originated"]["drops"]);
    assert_eq!(
        originated,
        sum_reasons(&c["originated"]["drop_reasons"]),
        "{c}"
    );
    assert_eq!(
        sum_reasons(&c["drops"]),
        port_drops + originated + tx_errors,
        "global reasons = ports' + tern's own + transmit errors: {c}"
    );
}

fn random_and_mutated_frames(text: String, nat: bool) {
    let config = Config::parse("test", &text).expect("config");
    let router = Router::start(&config, false).expect("start");
    let (p0, p1) = (
        router.memory[0].clone().expect("memory"),
        router.memory[1].clone().expect("memory"),
    );
    let good = udp_frame(
        [2, 0, 0, 0, 0, 1],
        [192, 0, 2, 2],
        7,
        [203, 0, 113, 2],
        9,
        b"",
    );
    let mut rng = wire::XorShift64::new(0x9e3779b97f4a7c15u64);
    let mut next = move || rng.next_u64();
    // `good` GRE-encapsulated (key 5) from the tunnel remote: mutations of it exercise the
    // decap stage (the pipeline-level fuzz of the tunnel path).
    let gre = {
        let inner = &good[eth::LEN..];
        let mut f = vec![0u8; eth::LEN + 28 + inner.len()];
        eth::write(&mut f, &[2, 0, 0, 0, 0, 1], &HOST, eth::TYPE_IPV4);
        ipv4::Header {
            total_len: (28 + inner.len()) as u16,
            flags_frag: ipv4::FLAG_DF,
            ..ipv4::Header::new(47, [192, 0, 2, 2].into(), [192, 0, 2, 1].into())
        }
        .emit(&mut f[eth::LEN..]);
        let key = wire::gre::Header {
            flags: 0,
            protocol: wire::gre::TYPE_IPV4,
            key: Some(5),
            sequence: None,
            len: 8,
        };
        key.write(&mut f[eth::LEN + 20..]);
        f[eth::LEN + 28..].copy_from_slice(inner);
        f
    };
    // Inbound to the NAT's external address (port forward and mapped ports), and an ICMP
    // error quoting a translated packet: mutations exercise conntrack and error paths.
    let inbound = {
        let mut f = good.clone();
        let ip = &mut f[eth::LEN..];
        ip[12..16].copy_from_slice(&[203, 0, 113, 2]);
        ip[16..20].copy_from_slice(&[203, 0, 113, 1]);
        ipv4::fill_checksum(ip);
        let udp = &mut ip[20..];
        wire::udp::write(udp, 53, 53, wire::udp::length(udp));
        f
    };
    let icmp_error = {
        let mut f = vec![0u8; eth::LEN + 28 + 28];
        eth::write(&mut f, &[2, 0, 0, 0, 0, 1], &HOST, eth::TYPE_IPV4);
        ipv4::Header {
            total_len: 56,
            ident: 1,
            ..ipv4::Header::new(
                ipv4::PROTO_ICMP,
                [203, 0, 113, 2].into(),
                [203, 0, 113, 1].into(),
            )
        }
        .emit(&mut f[eth::LEN..]);
        f[eth::LEN + 20] = 3;
        f[eth::LEN + 21] = 3;
        f[eth::LEN + 28..].copy_from_slice(&inbound[eth::LEN..eth::LEN + 28]);
        f
    };
    let mut templates: Vec<Vec<u8>> = vec![good.clone(), gre, {
        let mut v6 = vec![0u8; eth::LEN + 48];
        eth::write(&mut v6, &[2, 0, 0, 0, 0, 1], &HOST, eth::TYPE_IPV6);
        v6[eth::LEN] = 0x60;
        v6[eth::LEN + 5] = 8;
        v6[eth::LEN + 6] = 58;
        v6[eth::LEN + 7] = 64;
        v6
    }];
    let variant = |edit: &dyn Fn(&mut [u8])| {
        let mut f = good.clone();
        edit(&mut f[eth::LEN..]);
        ipv4::fill_checksum(&mut f[eth::LEN..]);
        f
    };
    // Frames with an ICMP answer beside their drop (time exceeded, no route), a martian
    // source, and an echo request tern answers.
    templates.push(variant(&|ip| ip[8] = 1));
    templates.push(variant(&|ip| {
        ip[16..20].copy_from_slice(&[198, 51, 100, 1])
    }));
    templates.push(variant(&|ip| ip[12..16].copy_from_slice(&[0, 0, 0, 0])));
    templates.push(variant(&|ip| {
        ip[9] = ipv4::PROTO_ICMP;
        ip[16..20].copy_from_slice(&[192, 0, 2, 1]);
        ip[20..28].copy_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
        let sum = wire::checksum(&ip[20..28]);
        ip[22..24].copy_from_slice(&sum.to_be_bytes());
    }));
    if nat {
        templates.extend([inbound, icmp_error]);
    }
    let total = 20_000;
    for i in 0..total {
        let mut f = if i % 4 == 0 {
            (0..(next() % 200) as usize).map(|_| next() as u8).collect()
        } else {
            templates[i % templates.len()].clone()
        };
        for _ in 0..(next() % 4) {
            if !f.is_empty() {
                let at = (next() as usize) % f.len();
                f[at] = next() as u8;
            }
        }
        if next() % 8 == 0 {
            let keep = (next() as usize) % (f.len() + 1);
            f.truncate(keep);
        }
        p0.inject(&f);
        if i % 1000 == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    p1.take_sent();
    p0.inject(&good);
    let out = wait_for(&p1, |f| {
        f.len() == eth::LEN + 28 && ipv4::ttl(&f[eth::LEN..]) == 63
    });
    assert_eq!(eth::dst(&out), [2, 0, 0, 0, 0, 0x99]);
    let c = router.ctl(&["show", "counters"]).expect("counters");
    let rx = c["interfaces"]["m0"]["rx_packets"].as_u64().unwrap_or(0);
    let decapsulated = c["events"]["tunnel_decapsulated"].as_u64().unwrap_or(0);
    assert!(
        decapsulated > 100,
        "intact GRE frames went through decap: {c}"
    );
    if nat {
        let translated = c["events"]["nat_translated"].as_u64().unwrap_or(0);
        assert!(translated > 100, "intact frames went through the NAT: {c}");
        let ct = router.ctl(&["show", "conntrack"]).expect("conntrack");
        let mut total = 0;
        for shard in ct["shards"].as_array().expect("shards") {
            let by_class: u64 = shard["by_class"]
                .as_object()
                .expect("classes")
                .values()
                .filter_map(|v| v.as_u64())
                .sum();
            assert_eq!(Some(by_class), shard["sessions_total"].as_u64(), "{shard}");
            total += by_class;
        }
        assert_eq!(
            ct["sessions"].as_array().map(|a| a.len() as u64),
            Some(total),
            "every session of every shard listed"
        );
    }
    assert!(
        rx > total as u64,
        "every frame was received and accounted: {c}"
    );
    assert_accounting(&c, &["m0", "m1"]);
    router.stop();
}

/// A UDP frame `src:sport → dst:dport` carrying `payload`, with valid checksums, as a
/// host with MAC `HOST` sends it to tern's port with MAC `to` (identification `sport`).
fn udp_frame(
    to: [u8; 6],
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    wire::testing::Udp4::new(src, sport, dst, dport)
        .ident(sport)
        .payload(payload)
        .frame(&to, &HOST)
}

/// (src, sport, dst, dport) of a UDP frame.
fn udp_endpoints(f: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    let ip = &f[eth::LEN..];
    let at = |i: usize| u16::from_be_bytes([ip[i], ip[i + 1]]);
    (
        ipv4::src(ip).octets(),
        at(20),
        ipv4::dst(ip).octets(),
        at(22),
    )
}

/// Collects `n` UDP frames sent on `port` (fewer after a few seconds), skipping the rest
/// (gratuitous ARP).
fn collect_udp(port: &dataplane::io::memory::MemoryPort, n: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while seen.len() < n && Instant::now() < deadline {
        seen.extend(port.take_sent().into_iter().filter(|f| {
            eth::ethertype(f) == eth::TYPE_IPV4 && ipv4::proto(&f[eth::LEN..]) == ipv4::PROTO_UDP
        }));
        std::thread::sleep(Duration::from_millis(5));
    }
    seen
}

/// NAT on two workers that take turns on the same memory queues, so a flow's request and
/// its reply reach either worker at random: every reply must still meet its session
/// (handed to the owning worker), and every session lives on exactly one shard. Forty
/// inside hosts, so that their home shards (a seeded hash) all coinciding — which would
/// leave one shard empty — has a chance of 2⁻³⁹.
#[test]
fn nat_on_two_workers_meets_every_flows_session_whichever_worker_receives_it() {
    const HOSTS: u8 = 40;
    const PORTS: u16 = 5;
    // The ports and the outside neighbour of CONFIG, without its tunnels.
    let ports = &CONFIG[..CONFIG.find("[[tunnel]]").unwrap_or(CONFIG.len())];
    let mut text = format!("[dataplane]\nworkers = 2\n{ports}");
    for h in 0..HOSTS {
        text += &format!(
            "[[neighbor]]\ninterface = \"m0\"\naddress = \"192.0.2.{}\"\nmac = \"02:00:00:00:01:{h:02x}\"\n",
            10 + h
        );
    }
    text += "[nat]\ninside = [\"m0\"]\noutside = [\"m1\"]\n";
    let config = Config::parse("test", &text).expect("config");
    let router = Router::start(&config, false).expect("start");
    let (p0, p1) = (
        router.memory[0].clone().expect("memory"),
        router.memory[1].clone().expect("memory"),
    );
    let (m0, m1) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let remote = [203, 0, 113, 2];
    let flows: Vec<([u8; 4], u16)> = (0..HOSTS)
        .flat_map(|h| (0..PORTS).map(move |p| ([192, 0, 2, 10 + h], 20_000 + p)))
        .collect();
    for &(host, port) in &flows {
        p0.inject(&udp_frame(m0, host, port, remote, 53, b"tern"));
    }
    let out = collect_udp(&p1, flows.len());
    assert_eq!(
        out.len(),
        flows.len(),
        "every flow left by the outside port"
    );
    let mut external = std::collections::HashSet::new();
    for f in &out {
        let (src, _, dst, dport) = udp_endpoints(f);
        assert_eq!((src, dst, dport), ([203, 0, 113, 1], remote, 53));
        assert!(
            external.insert(udp_endpoints(f).1),
            "one external port per flow"
        );
    }
    for &port in &external {
        p1.inject(&udp_frame(m1, remote, 53, [203, 0, 113, 1], port, b"tern"));
    }
    let back = collect_udp(&p0, flows.len());
    let mut returned: Vec<([u8; 4], u16)> = back
        .iter()
        .map(|f| {
            let (src, sport, dst, dport) = udp_endpoints(f);
            assert_eq!((src, sport), (remote, 53), "reply source kept");
            (dst, dport)
        })
        .collect();
    returned.sort_unstable();
    let lost = flows
        .iter()
        .filter(|f| returned.binary_search(f).is_err())
        .count();
    assert_eq!(lost, 0, "replies that missed their inside host and port");
    assert_eq!(returned.len(), flows.len(), "one reply per flow");

    let c = router.ctl(&["show", "counters"]).expect("counters");
    let handed = c["events"]["handed_off"].as_u64().unwrap_or(0);
    let received = c["events"]["handed_in"].as_u64().unwrap_or(0);
    assert!(
        handed > 0,
        "some frames reached the other worker's shard: {c}"
    );
    assert_eq!(handed, received, "{c}");
    let ct = router.ctl(&["show", "conntrack"]).expect("conntrack");
    let per_shard: Vec<u64> = ct["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["sessions_total"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(per_shard.len(), 2);
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        flows.len() as u64,
        "{per_shard:?}"
    );
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards own flows: {per_shard:?}"
    );
    router.stop();
}
