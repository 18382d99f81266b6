//! FRR as tern's control plane: zebra (with `dplane_fpm_nl`) and staticd run in tern's own
//! namespace and send zebra's FIB to tern's FPM listener over loopback.
//!
//! ```text
//!  A 192.0.2.2 / 2001:db8:a::2 ── tern ── B 203.0.113.2
//!    198.18.5.1, 198.18.6.1, 2001:db8:5::1 on lo        zebra + staticd in tern's namespace
//! ```

use std::time::{Duration, Instant};

use testbed::frr::Zebra;
use testbed::{eventually, ping, Ports, TwoHosts};

const LONG: Duration = Duration::from_secs(30);

/// The first line lands in `[control]`: the metrics endpoint.
const TERN_FPM: &str =
    "metrics = \"127.0.0.1:9464\"\n[fpm]\nlisten = \"127.0.0.1:2620\"\nstale_time = 3\n";

const STATICS: &str = "ip route 198.18.5.0/24 192.0.2.2\n\
                       ip route 198.18.6.0/24 192.0.2.2\n\
                       ipv6 route 2001:db8:5::/48 2001:db8:a::2\n\
                       ip route 198.18.7.0/24 blackhole\n";

/// The source of tern's FIB entry for exactly `prefix`, if it has one.
fn fib_source(net: &TwoHosts, prefix: &str) -> Option<String> {
    let r = net.tern.try_ctl(&["show", "route", prefix]).ok()?;
    r["source"].as_str().map(str::to_string)
}

/// Waits for `check`; on timeout the failure shows tern's FPM counters and zebra's routes.
fn wait(net: &TwoHosts, zebra: &Zebra, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !check() {
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}\ntern: {}\nzebra:\n{}{}",
                net.tern.ctl(&["show", "fpm"]),
                zebra.show("show ip route"),
                zebra.show("show ipv6 route"),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn b_pings(net: &TwoHosts, dst: &str) -> String {
    let v6 = if dst.contains(':') { "-6" } else { "-4" };
    ping(&net.b, &[v6, "-c", "3", "-i", "0.2", "-W", "2", dst])
}

/// zebra's static routes reach tern's FIB and traffic follows them; a route removed in
/// zebra leaves tern; routes zebra cannot hand over (blackhole) are counted, not installed;
/// zebra killed: forwarding goes on; zebra back with a different table: the routes it does
/// not replay are swept after `stale_time`.
#[test]
fn zebra_routes_over_fpm_installed_followed_removed_and_swept() {
    let net = TwoHosts::with(Ports::AfXdp, TERN_FPM, 1500);
    net.a
        .ok(&["ip", "addr", "add", "198.18.5.1/32", "dev", "lo"]);
    net.a
        .ok(&["ip", "addr", "add", "198.18.6.1/32", "dev", "lo"]);
    net.a
        .ok(&["ip", "-6", "addr", "add", "2001:db8:5::1/128", "dev", "lo"]);
    let dut = net.dut.as_ref().expect("tern's namespace");
    let zebra = Zebra::start(dut, "127.0.0.1 port 2620", STATICS);

    wait(&net, &zebra, "zebra's routes in tern's FIB", || {
        fib_source(&net, "198.18.5.0/24").as_deref() == Some("fpm")
            && fib_source(&net, "198.18.6.0/24").as_deref() == Some("fpm")
            && fib_source(&net, "2001:db8:5::/48").as_deref() == Some("fpm")
    });
    let fpm = net.tern.ctl(&["show", "fpm"]);
    assert_eq!(fpm["connections"], 1, "{fpm}");
    assert!(fpm["connected"].is_string(), "{fpm}");
    assert_eq!(fpm["errors"], 0, "{fpm}");
    assert!(
        fpm["skipped"]["blackhole, unreachable or prohibit route"].as_u64() >= Some(1),
        "{fpm}"
    );
    assert_eq!(fib_source(&net, "198.18.7.0/24"), None);
    for dst in ["198.18.5.1", "198.18.6.1", "2001:db8:5::1"] {
        let out = b_pings(&net, dst);
        assert!(out.contains(" 0% packet loss"), "{dst}: {out}");
    }
    let fib = net.tern.ctl(&["show", "fib"]);
    assert_eq!(fib["ipv4_by_source"]["fpm"], 2, "{fib}");
    assert_eq!(fib["ipv6_by_source"]["fpm"], 1, "{fib}");
    let m = dut.http_get("127.0.0.1:9464", "/metrics").expect("metrics");
    for line in [
        "tern_fpm_connected 1\n",
        "tern_fpm_routes 3\n",
        "tern_fib_routes_by_source{family=\"ipv4\",source=\"fpm\"} 2\n",
    ] {
        assert!(m.contains(line), "{line} not in:\n{m}");
    }

    // Removed in zebra: gone from tern, B gets net unreachable.
    let out = zebra.configure(&["no ip route 198.18.5.0/24 192.0.2.2"]);
    wait(&net, &zebra, "198.18.5.0/24 gone", || {
        fib_source(&net, "198.18.5.0/24").is_none()
    });
    let out2 = b_pings(&net, "198.18.5.1");
    assert!(out2.contains("Unreachable"), "{out}\n{out2}");

    // zebra dies: its routes stay, traffic keeps flowing.
    drop(zebra);
    eventually(LONG, "tern notices zebra gone", || {
        net.tern.ctl(&["show", "fpm"])["connected"].is_null()
    });
    let out = b_pings(&net, "2001:db8:5::1");
    assert!(out.contains(" 0% packet loss"), "{out}");

    // zebra back without the IPv6 route: it replays 198.18.6.0/24, the IPv6 route is swept
    // once stale_time has passed.
    let zebra = Zebra::start(
        dut,
        "127.0.0.1 port 2620",
        "ip route 198.18.6.0/24 192.0.2.2\n",
    );
    wait(&net, &zebra, "the IPv6 route swept", || {
        fib_source(&net, "2001:db8:5::/48").is_none()
    });
    let fpm = net.tern.ctl(&["show", "fpm"]);
    assert_eq!(fpm["connections"], 2, "{fpm}");
    assert_eq!(fpm["stale_removed"], 1, "{fpm}");
    assert_eq!(fib_source(&net, "198.18.6.0/24").as_deref(), Some("fpm"));
    let out = b_pings(&net, "198.18.6.1");
    assert!(
        out.contains(" 0% packet loss"),
        "{out}\n{}",
        zebra.log("zebra")
    );
}
