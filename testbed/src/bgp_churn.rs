//! Churn: a scripted peer ([`crate::bgp_peer`]) loads a table into tern, then replays the
//! RIS 24 h update stream as fast as TCP takes it. Measured: updates per second reaching
//! tern's FIB, the final FIB against the table the stream leads to, and tern's KEEPALIVEs
//! meanwhile (the session must not drop on hold-timer expiry under load).
//!
//! ```text
//!  A: peer 192.0.2.2, AS 65001, hold 9 s ── tern 192.0.2.1 (passive) ── B
//!     next hops 192.0.2.2 / 192.0.2.3 and 2001:db8:a::2 / ::3, alternating per window
//! ```
//!
//! The stream has no attributes, so announcements alternate between two next hops every
//! [`WINDOW`] updates: a replaced route really changes in the FIB. Consecutive updates of
//! the same kind, family and next hop share an UPDATE message (up to 200 prefixes), as a
//! router's update packing would; the IPv4 stream goes first, then the IPv6 stream. The
//! end is marked by one more route ([`MARKER`]): tern applies a peer's updates in order,
//! so once the marker is in the FIB, so is everything before it.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bgp_glue::codec::{self, Announce, Family};
use ipnet::IpNet;

use crate::bgp_load::{ebgp_routes, wait_until, Table};
use crate::bgp_peer::Peer;
use crate::tables::Update;
use crate::{rss_kib, Ports, TwoHosts, A4, A6};

/// Updates per next-hop window.
pub const WINDOW: usize = 1000;
pub const MARKER: &str = "198.18.250.0/24";
const HOLD_TIME: u16 = 9;
const SECOND_A4: &str = "192.0.2.3";
const SECOND_A6: &str = "2001:db8:a::3";

#[derive(Debug, Clone)]
pub struct ChurnResult {
    /// Established → the initial table in the FIB.
    pub table_seconds: f64,
    pub updates: usize,
    pub messages: usize,
    /// First byte of the stream → last byte written.
    pub send_seconds: f64,
    /// First byte of the stream → the marker in the FIB.
    pub fib_seconds: f64,
    pub expected_v4: u64,
    pub expected_v6: u64,
    pub fib_v4: u64,
    pub fib_v6: u64,
    /// tern's KEEPALIVEs over the whole run, the longest silence, the hold time.
    pub keepalives: u64,
    pub max_gap: Duration,
    pub hold_time: u16,
    pub notification: Option<String>,
    pub established_after: bool,
    pub tern_rss_kib: u64,
}

impl ChurnResult {
    pub fn updates_per_second(&self) -> f64 {
        self.updates as f64 / self.fib_seconds.max(1e-9)
    }
}

fn tern_config() -> String {
    format!(
        "[bgp]\nrouter_id = \"192.0.2.1\"\nlocal_as = 65000\n\
         [[bgp.peer]]\nname = \"a\"\naddress = \"{A4}\"\nremote_as = 65001\npassive = true\n\
         hold_time = {HOLD_TIME}\nfamilies = [\"ipv4\", \"ipv6\"]\nimport = \"all\"\n"
    )
}

fn next_hop(net: &IpNet, second: bool) -> Result<IpAddr, String> {
    let s = match (net, second) {
        (IpNet::V4(_), false) => A4,
        (IpNet::V4(_), true) => SECOND_A4,
        (IpNet::V6(_), false) => A6,
        (IpNet::V6(_), true) => SECOND_A6,
    };
    s.parse().map_err(|_| format!("bad address {s}"))
}

fn encode(pack: &[IpNet], announce: bool, second: bool) -> Result<Vec<Vec<u8>>, String> {
    let Some(first) = pack.first() else {
        return Ok(Vec::new());
    };
    Ok(if announce {
        let a = Announce {
            local_as: 65001,
            ebgp: true,
            asn4: true,
            next_hop: next_hop(first, second)?,
        };
        codec::announce(pack, &a)
    } else {
        codec::withdraw(pack)
    })
}

/// The stream as UPDATE messages (see the module docs for the packing).
pub fn messages(updates: &[Update]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut pack: Vec<IpNet> = Vec::new();
    let mut in_pack = HashSet::new();
    let mut key = (true, Family::Ipv4, false);
    for (i, u) in updates.iter().enumerate() {
        let second = u.announce && (i / WINDOW) % 2 == 1;
        let k = (u.announce, Family::of(&u.net), second);
        if k != key || pack.len() == 200 || in_pack.contains(&u.net) {
            out.extend(encode(&pack, key.0, key.2)?);
            pack.clear();
            in_pack.clear();
            key = k;
        }
        pack.push(u.net);
        in_pack.insert(u.net);
    }
    out.extend(encode(&pack, key.0, key.2)?);
    Ok(out)
}

/// The table after the stream: (IPv4 routes, IPv6 routes).
pub fn final_counts(table: &Table, updates: &[Update]) -> (u64, u64) {
    let mut routes: HashSet<IpNet> = table
        .v4
        .iter()
        .map(|&n| IpNet::V4(n))
        .chain(table.v6.iter().map(|&n| IpNet::V6(n)))
        .collect();
    for u in updates {
        if u.announce {
            routes.insert(u.net);
        } else {
            routes.remove(&u.net);
        }
    }
    let v4 = routes.iter().filter(|n| matches!(n, IpNet::V4(_))).count() as u64;
    (v4, routes.len() as u64 - v4)
}

/// Loads `table`, replays `updates`; see the module docs.
pub fn replay(table: &Table, updates: &[Update], timeout: Duration) -> Result<ChurnResult, String> {
    let net = TwoHosts::with(Ports::AfXdp, &tern_config(), 1500);
    let dev = &net.tap_a;
    net.a
        .ok(&["ip", "addr", "add", &format!("{SECOND_A4}/24"), "dev", dev]);
    net.a.ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        &format!("{SECOND_A6}/64"),
        "dev",
        dev,
        "nodad",
    ]);
    let tern: SocketAddr = "192.0.2.1:179".parse().map_err(|_| "address")?;
    let router_id = A4.parse().map_err(|_| "address")?;
    // tern's host interface and listener come up with it; retry the first connects.
    let mut peer = Err(String::new());
    for _ in 0..50 {
        peer = Peer::establish(&net.a, tern, 65001, router_id, HOLD_TIME);
        if peer.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let peer = peer.map_err(|e| format!("session to tern: {e}"))?;

    let table_start = Instant::now();
    let v4: Vec<IpNet> = table.v4.iter().map(|&n| IpNet::V4(n)).collect();
    let v6: Vec<IpNet> = table.v6.iter().map(|&n| IpNet::V6(n)).collect();
    let mut load = encode(&v4, true, false)?;
    load.extend(encode(&v6, true, false)?);
    load.push(codec::end_of_rib(Family::Ipv4));
    load.push(codec::end_of_rib(Family::Ipv6));
    peer.send(&load)?;
    wait_until(timeout, "the table in tern's FIB", || {
        let (n4, n6) = ebgp_routes(&net.tern)?;
        Ok(n4 >= table.v4.len() as u64 && n6 >= table.v6.len() as u64)
    })?;
    let table_seconds = table_start.elapsed().as_secs_f64();

    let mut stream = messages(updates)?;
    let marker: IpNet = MARKER.parse().map_err(|_| "marker")?;
    stream.extend(encode(&[marker], true, false)?);
    let start = Instant::now();
    peer.send(&stream)?;
    let send_seconds = start.elapsed().as_secs_f64();
    wait_until(
        timeout,
        "the end-of-stream marker in tern's FIB",
        || match net.tern.try_ctl(&["show", "route", MARKER]) {
            Ok(_) => Ok(true),
            Err(e) if e.starts_with("no route") => Ok(false),
            Err(e) => Err(e),
        },
    )?;
    let fib_seconds = start.elapsed().as_secs_f64();

    let (n4, n6) = ebgp_routes(&net.tern)?;
    let (expected_v4, expected_v6) = final_counts(table, updates);
    let heard = peer.heard();
    let established_after = net
        .tern
        .try_ctl(&["show", "bgp", "neighbors", "a"])
        .is_ok_and(|v| v["neighbors"][0]["state"] == "Established");
    Ok(ChurnResult {
        table_seconds,
        updates: updates.len(),
        messages: stream.len(),
        send_seconds,
        fib_seconds,
        expected_v4,
        expected_v6,
        // The marker is one IPv4 route more.
        fib_v4: n4.saturating_sub(1),
        fib_v6: n6,
        keepalives: heard.keepalives,
        max_gap: heard.max_gap,
        hold_time: peer.hold_time,
        notification: heard.notification,
        established_after,
        tern_rss_kib: net.tern.pid().map(rss_kib).unwrap_or(0),
    })
}
