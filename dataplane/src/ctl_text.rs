//! The human forms of ctl answers (`tern ctl` without `--json`): aligned tables like
//! iproute2's and vtysh's, a line per row of a streamed listing, a block per traced
//! packet. Anything without a table of its own prints as indented JSON.

use serde_json::Value;

/// The streamed listings and how each prints.
#[derive(Clone, Copy)]
pub enum Listing {
    Routes,
    /// BGP rows (a prefix with its paths) have no table form yet: one JSON line each.
    BgpRoutes,
    Sessions,
}

impl Listing {
    pub fn of(words: &[String]) -> Listing {
        match words.get(1).map(String::as_str) {
            Some("bgp") => Listing::BgpRoutes,
            Some("conntrack") => Listing::Sessions,
            _ => Listing::Routes,
        }
    }

    /// The JSON key the rows go under.
    pub fn key(self) -> &'static str {
        match self {
            Listing::Routes | Listing::BgpRoutes => "routes",
            Listing::Sessions => "sessions",
        }
    }

    pub fn header(self) -> String {
        match self {
            Listing::Routes => route_header(),
            Listing::BgpRoutes => String::new(),
            Listing::Sessions => session_header(),
        }
    }

    pub fn line(self, row: &Value) -> String {
        match self {
            Listing::Routes => route_line(row),
            Listing::BgpRoutes => format!("{row}\n"),
            Listing::Sessions => session_line(row),
        }
    }

    /// What follows the rows: the shards' counters for sessions.
    pub fn footer(self, end: &Value) -> String {
        match self {
            Listing::Routes | Listing::BgpRoutes => String::new(),
            Listing::Sessions => {
                let mut out = format!("{} sessions listed\n", end["count"]);
                for s in end["shards"].as_array().into_iter().flatten() {
                    out += &format!(
                        "shard {}: {} of {} sessions, {} mappings, created {}, expired {}, early dropped {}\n",
                        s["shard"], s["sessions_total"], s["capacity"], s["mappings"],
                        s["created"], s["expired"], s["early_dropped"]
                    );
                }
                out
            }
        }
    }
}

fn session_header() -> String {
    format!(
        "{:<5} {:<7} {:<16} {:<21} {:<21} {:<21} {:<21} {:>8} {:>7}\n",
        "proto",
        "kind",
        "state",
        "orig src",
        "orig dst",
        "reply src",
        "reply dst",
        "packets",
        "expires"
    )
}

/// One row of `show conntrack` as a table line.
fn session_line(r: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!(
        "{:<5} {:<7} {:<16} {:<21} {:<21} {:<21} {:<21} {:>8} {:>6}s\n",
        s(&r["proto"]),
        s(&r["kind"]),
        s(&r["state"]),
        s(&r["orig_src"]),
        s(&r["orig_dst"]),
        s(&r["reply_src"]),
        s(&r["reply_dst"]),
        s(&r["packets"]),
        s(&r["expires_s"])
    )
}

fn route_header() -> String {
    format!("{:<44} {:<10} {}\n", "prefix", "source", "next hop")
}

/// One row of `show routes` as a table line.
fn route_line(r: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let nh = &r["next_hop"];
    let desc = match nh["type"].as_str() {
        Some("neighbor") => format!(
            "via {} dev {} {}",
            s(&nh["via"]),
            s(&nh["interface"]),
            nh["mac"].as_str().or(nh["state"].as_str()).unwrap_or("")
        ),
        Some("connected") => format!("dev {}", s(&nh["interface"])),
        Some(t) => t.to_string(),
        None => "unresolved".into(),
    };
    format!("{:<44} {:<10} {}\n", s(&r["prefix"]), s(&r["source"]), desc)
}

/// Human-readable tables for `tern ctl show …`.
pub fn render(words: &[String], v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = String::new();
    match words.get(1).map(|w| w.as_str()) {
        Some("bgp") if words.get(2).is_none_or(|w| w == "summary") => out = bgp_summary(v),
        Some("tunnels") => {
            out += &format!(
                "{:<12} {:<6} {:<40} {:<40} {:>5} {:>10} {:>10} {:>8}\n",
                "name", "kind", "local", "remote", "mtu", "rx", "tx", "drops"
            );
            for t in v.as_array().into_iter().flatten() {
                out += &format!(
                    "{:<12} {:<6} {:<40} {:<40} {:>5} {:>10} {:>10} {:>8}\n",
                    s(&t["name"]),
                    s(&t["kind"]),
                    s(&t["local"]),
                    s(&t["remote"]),
                    s(&t["mtu"]),
                    s(&t["rx_packets"]),
                    s(&t["tx_packets"]),
                    s(&t["drops"])
                );
            }
        }
        Some("trace") => {
            // One block per packet, a line per stage, as VPP's `show trace`.
            for p in v["packets"].as_array().into_iter().flatten() {
                // The time of day (UTC) it came, to the nanosecond.
                let ns = p["time_ns"].as_u64().unwrap_or(0);
                let day = ns % (86_400 * 1_000_000_000);
                let (secs, frac) = (day / 1_000_000_000, day % 1_000_000_000);
                out += &format!(
                    "Packet {}  worker {}  port {}  at {:02}:{:02}:{:02}.{frac:09} UTC\n",
                    s(&p["packet"]),
                    s(&p["worker"]),
                    s(&p["port"]),
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60
                );
                for step in p["steps"].as_array().into_iter().flatten() {
                    out += &format!("  {:<8} {}\n", s(&step["stage"]), s(&step["what"]));
                }
                out += "\n";
            }
            out += &format!("{} packets still to trace\n", s(&v["pending"]));
        }
        Some("interfaces") => {
            out += &format!(
                "{:<12} {:<18} {:>5} {:>10} {:>10} {:>8}  addresses\n",
                "name", "mac", "mtu", "rx", "tx", "drops"
            );
            for i in v.as_array().into_iter().flatten() {
                let addrs: Vec<String> = i["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                out += &format!(
                    "{:<12} {:<18} {:>5} {:>10} {:>10} {:>8}  {}\n",
                    s(&i["name"]),
                    s(&i["mac"]),
                    s(&i["mtu"]),
                    s(&i["rx_packets"]),
                    s(&i["tx_packets"]),
                    s(&i["drops"]),
                    addrs.join(" ")
                );
                let b = &i["backend"];
                if b.is_object() {
                    out += &format!(
                        "{:<12} AF_XDP {} XDP, {} mode; kernel drops: rx_dropped={} rx_ring_full={} fill_ring_empty={}\n",
                        "",
                        s(&b["xdp"]),
                        s(&b["af_xdp"]),
                        s(&b["rx_dropped"]),
                        s(&b["rx_ring_full"]),
                        s(&b["rx_fill_ring_empty"])
                    );
                }
            }
        }
        Some("routes") => {
            out += &route_header();
            for r in v["routes"].as_array().into_iter().flatten() {
                out += &route_line(r);
            }
        }
        Some("neighbors") => {
            // As `ip neigh`: address, port, MAC, state, and what the state holds (the
            // seconds since the neighbour was last heard, or the tries so far).
            out += &format!(
                "{:<40} {:<12} {:<18} {:<11} {}\n",
                "address", "interface", "mac", "state", "detail"
            );
            for n in v.as_array().into_iter().flatten() {
                let d = &n["detail"];
                let detail = match (d["age_s"].as_u64(), d["tries"].as_u64()) {
                    (Some(age), _) => format!("heard {age} s ago"),
                    (_, Some(tries)) => format!("{tries} tries, {} held", s(&d["held"])),
                    _ => String::new(),
                };
                out += &format!(
                    "{:<40} {:<12} {:<18} {:<11} {}\n",
                    s(&n["address"]),
                    s(&n["interface"]),
                    s(&n["mac"]),
                    s(&n["state"]),
                    detail.trim_end()
                );
            }
        }
        Some("counters") => {
            for (section, values) in v.as_object().into_iter().flatten() {
                out += &format!("{section}:\n");
                for (i, w) in values.as_array().into_iter().flatten().enumerate() {
                    out += &format!(
                        "  {:<28} rx={} tx={}\n",
                        format!("{section}[{i}]"),
                        w["rx_packets"],
                        w["tx_packets"]
                    );
                }
                for (k, val) in values.as_object().into_iter().flatten() {
                    if val.is_object() {
                        let parts: Vec<String> = val
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        out += &format!("  {k:<28} {}\n", parts.join(" "));
                    } else if val.as_u64() != Some(0) {
                        out += &format!("  {k:<28} {val}\n");
                    }
                }
            }
        }
        _ => out = format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
    out
}

/// `show bgp summary` as vtysh prints it: the speaker, then a line per peer with its
/// messages, how long it has been in its state, and its state or (Established) the
/// prefixes it gave.
pub fn bgp_summary(v: &Value) -> String {
    let mut out = format!(
        "BGP router identifier {}, local AS number {}\nRIB entries {}, installed {} IPv4 + {} IPv6\n\n",
        text(&v["router_id"]),
        text(&v["local_as"]),
        text(&v["prefixes"]),
        text(&v["installed_ipv4"]),
        text(&v["installed_ipv6"])
    );
    out += &format!(
        "{:<39} {:>1} {:>10} {:>9} {:>9} {:>9}  State/PfxRcd\n",
        "Neighbor", "V", "AS", "MsgRcvd", "MsgSent", "Up/Down"
    );
    for p in v["peers"].as_array().into_iter().flatten() {
        let state = text(&p["state"]);
        let received = match (p["prefixes_ipv4"].as_u64(), p["prefixes_ipv6"].as_u64()) {
            (Some(a), Some(b)) => (a + b).to_string(),
            _ => "-".into(),
        };
        let state_or_prefixes = if state == "Established" {
            received
        } else {
            state
        };
        out += &format!(
            "{:<39} {:>1} {:>10} {:>9} {:>9} {:>9}  {}\n",
            text(&p["address"]),
            4,
            text(&p["remote_as"]),
            text(&p["messages_in"]),
            text(&p["messages_out"]),
            up_down(p["for_seconds"].as_u64().unwrap_or(0)),
            state_or_prefixes
        );
    }
    out
}

/// A duration as vtysh's Up/Down column: `hh:mm:ss` within a day, then `NdNNhNNm`.
fn up_down(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{d}d{h:02}h{m:02}m")
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn neighbours_read_like_ip_neigh() {
        let v = json!([
            {"address": "192.0.2.2", "interface": "tern0", "state": "reachable",
             "mac": "02:00:00:00:00:02", "detail": {"age_s": 12}},
            {"address": "192.0.2.9", "interface": "tern0", "state": "incomplete",
             "mac": null, "detail": {"tries": 2, "held": 1}},
        ]);
        let text = render(&["show".into(), "neighbors".into()], &v);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("address") && lines[0].ends_with("state       detail"));
        assert!(
            lines[1].ends_with("02:00:00:00:00:02  reachable   heard 12 s ago"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("-                  incomplete  2 tries, 1 held"),
            "{text}"
        );
    }

    #[test]
    fn bgp_summary_reads_like_vtysh() {
        let v = json!({
            "router_id": "192.0.2.1", "local_as": 65001, "prefixes": 12, "installed_ipv4": 10,
            "installed_ipv6": 2,
            "peers": [
                {"address": "192.0.2.2", "remote_as": 65002, "state": "Established",
                 "for_seconds": 3723, "prefixes_ipv4": 10, "prefixes_ipv6": 2,
                 "messages_in": 40, "messages_out": 7},
                {"address": "2001:db8::2", "remote_as": 4200000000u64, "state": "Active",
                 "for_seconds": 90061, "prefixes_ipv4": 0, "prefixes_ipv6": 0,
                 "messages_in": 0, "messages_out": 0},
            ]
        });
        let text = bgp_summary(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "BGP router identifier 192.0.2.1, local AS number 65001"
        );
        assert!(lines[3].starts_with("Neighbor") && lines[3].ends_with("Up/Down  State/PfxRcd"));
        let columns = |l: &str| l.split_whitespace().map(String::from).collect::<Vec<_>>();
        assert_eq!(
            columns(lines[4]),
            ["192.0.2.2", "4", "65002", "40", "7", "01:02:03", "12"]
        );
        assert_eq!(
            columns(lines[5]),
            [
                "2001:db8::2",
                "4",
                "4200000000",
                "0",
                "0",
                "1d01h01m",
                "Active"
            ]
        );
    }
}
