//! The metric families, one function per source answer (`show counters`, `show fib`,
//! `show bgp neighbors`, `show fpm`, NAT's summary and rules), written in the text
//! exposition format by [`Metrics`].

use std::fmt::Write as _;

use serde_json::Value;

pub(super) fn counters(m: &mut Metrics, c: &Value) {
    for (field, name, help) in [
        (
            "rx_packets",
            "tern_interface_rx_packets_total",
            "Packets received on an interface.",
        ),
        (
            "rx_bytes",
            "tern_interface_rx_bytes_total",
            "Bytes received on an interface.",
        ),
        (
            "tx_packets",
            "tern_interface_tx_packets_total",
            "Packets sent on an interface.",
        ),
        (
            "tx_bytes",
            "tern_interface_tx_bytes_total",
            "Bytes sent on an interface.",
        ),
        (
            "drops",
            "tern_interface_drops_total",
            "Packets received on an interface and dropped.",
        ),
        (
            "forwarded",
            "tern_interface_forwarded_total",
            "Packets received on an interface and sent on towards a next hop.",
        ),
        (
            "punted",
            "tern_interface_punted_total",
            "Packets received on an interface and held for neighbour resolution.",
        ),
        (
            "local",
            "tern_interface_local_total",
            "Packets received on an interface and taken by tern (answered, learned, held).",
        ),
        (
            "tx_errors",
            "tern_interface_tx_errors_total",
            "Packets queued on an interface that the device refused.",
        ),
    ] {
        m.family(name, help, "counter");
        for (interface, v) in entries(&c["interfaces"]) {
            m.sample(name, &[("interface", interface)], &v[field]);
        }
    }
    m.counters_by(
        "tern_drops_total",
        "Packets dropped, by reason.",
        "reason",
        &c["drops"],
    );
    m.counters_by(
        "tern_events_total",
        "Dataplane events (ICMP sent, fragments made, ...).",
        "event",
        &c["events"],
    );
    m.family(
        "tern_worker_rx_packets_total",
        "Packets a worker received.",
        "counter",
    );
    for (i, w) in c["workers"].as_array().into_iter().flatten().enumerate() {
        m.sample(
            "tern_worker_rx_packets_total",
            &[("worker", &i.to_string())],
            &w["rx_packets"],
        );
    }
    for (field, v) in entries(&c["control"]) {
        let name = format!("tern_control_{field}_total");
        m.family(&name, "Control-plane neighbour resolution.", "counter");
        m.sample(&name, &[], v);
    }
}

pub(super) fn fib(m: &mut Metrics, f: &Value) {
    m.family("tern_fib_routes", "Prefixes in the FIB.", "gauge");
    m.family(
        "tern_fib_bytes",
        "Memory of the FIB's lookup structures.",
        "gauge",
    );
    m.family(
        "tern_rib_winner_changes_total",
        "Times a prefix's winning route changed.",
        "counter",
    );
    m.family(
        "tern_fib_routes_by_source",
        "Prefixes whose winning route is from a source.",
        "gauge",
    );
    for family in ["ipv4", "ipv6"] {
        let l = [("family", family)];
        m.sample("tern_fib_routes", &l, &f[format!("{family}_routes")]);
        m.sample("tern_fib_bytes", &l, &f[format!("{family}_bytes")]);
        m.sample(
            "tern_rib_winner_changes_total",
            &l,
            &f[format!("{family}_winner_changes")],
        );
        for (source, v) in entries(&f[format!("{family}_by_source")]) {
            m.sample(
                "tern_fib_routes_by_source",
                &[("family", family), ("source", source)],
                v,
            );
        }
    }
}

pub(super) fn bgp(m: &mut Metrics, n: &Value) {
    let peers: Vec<&Value> = n["neighbors"].as_array().into_iter().flatten().collect();
    m.family(
        "tern_bgp_peer_established",
        "1 while the session is Established.",
        "gauge",
    );
    for p in &peers {
        let up = Value::from(u8::from(p["state"] == "Established"));
        m.sample("tern_bgp_peer_established", &peer_labels(p), &up);
    }
    m.family(
        "tern_bgp_peer_prefixes",
        "Prefixes accepted from the peer.",
        "gauge",
    );
    for p in &peers {
        for family in ["ipv4", "ipv6"] {
            let mut l = peer_labels(p);
            l.push(("family", family));
            m.sample(
                "tern_bgp_peer_prefixes",
                &l,
                &p[format!("prefixes_{family}")],
            );
        }
    }
    for (field, help) in [
        ("prefixes_filtered", "Prefixes the import policy refused."),
        ("messages_in", "BGP messages received."),
        ("messages_out", "BGP messages sent."),
        ("updates_in", "UPDATE messages received."),
        ("keepalives_in", "KEEPALIVE messages received."),
        ("keepalives_out", "KEEPALIVE messages sent."),
        ("notifications_in", "NOTIFICATION messages received."),
        ("notifications_out", "NOTIFICATION messages sent."),
        (
            "treat_as_withdraw",
            "UPDATEs treated as withdraw (RFC 7606).",
        ),
        ("attributes_discarded", "Attributes discarded (RFC 7606)."),
        (
            "established_transitions",
            "Times the session reached Established.",
        ),
    ] {
        let name = format!("tern_bgp_peer_{field}_total");
        m.family(&name, help, "counter");
        for p in &peers {
            m.sample(&name, &peer_labels(p), &p[field]);
        }
    }
}

fn peer_labels(p: &Value) -> Vec<(&'static str, &str)> {
    vec![
        ("peer", p["name"].as_str().unwrap_or("")),
        ("address", p["address"].as_str().unwrap_or("")),
    ]
}

pub(super) fn fpm(m: &mut Metrics, f: &Value) {
    m.family("tern_fpm_connected", "1 while zebra is connected.", "gauge");
    m.sample(
        "tern_fpm_connected",
        &[],
        &Value::from(u8::from(f["connected"].is_string())),
    );
    m.family("tern_fpm_routes", "Routes from zebra installed.", "gauge");
    m.sample("tern_fpm_routes", &[], &f["routes"]);
    for field in [
        "connections",
        "frames",
        "routes_added",
        "routes_removed",
        "stale_removed",
        "errors",
    ] {
        let name = format!("tern_fpm_{field}_total");
        m.family(&name, "FPM stream from zebra.", "counter");
        m.sample(&name, &[], &f[field]);
    }
    m.counters_by(
        "tern_fpm_skipped_total",
        "Messages from zebra not installed, by reason.",
        "reason",
        &f["skipped"],
    );
}

/// The NAT: per shard (worker) sessions and their churn, port use per external address,
/// and which DNAT backends are in service.
pub(super) fn nat(m: &mut Metrics, summary: &Value, rules: &Value) {
    let shards: Vec<&Value> = summary["shards"].as_array().into_iter().flatten().collect();
    let shard_label = |s: &Value| s["shard"].as_u64().unwrap_or(0).to_string();
    m.family(
        "tern_nat_sessions",
        "NAT sessions in a worker's table, by class.",
        "gauge",
    );
    for s in &shards {
        let shard = shard_label(s);
        for (class, v) in entries(&s["by_class"]) {
            m.sample(
                "tern_nat_sessions",
                &[("shard", &shard), ("class", class)],
                v,
            );
        }
    }
    for (field, name, help, kind) in [
        (
            "capacity",
            "tern_nat_sessions_capacity",
            "Sessions a worker's table holds (preallocated).",
            "gauge",
        ),
        (
            "mappings",
            "tern_nat_mappings",
            "Endpoint-independent SNAT mappings (external ports held).",
            "gauge",
        ),
        (
            "created",
            "tern_nat_sessions_created_total",
            "NAT sessions created.",
            "counter",
        ),
        (
            "expired",
            "tern_nat_sessions_expired_total",
            "NAT sessions reclaimed after their idle timeout.",
            "counter",
        ),
        (
            "early_dropped",
            "tern_nat_sessions_early_dropped_total",
            "NAT sessions evicted to make room in a full table.",
            "counter",
        ),
        (
            "deleted",
            "tern_nat_sessions_deleted_total",
            "NAT sessions deleted by an operator.",
            "counter",
        ),
    ] {
        m.family(name, help, kind);
        for s in &shards {
            m.sample(name, &[("shard", &shard_label(s))], &s[field]);
        }
    }
    // The port map is shared: every shard reports the same use, so the first one speaks.
    m.family(
        "tern_nat_ports_in_use",
        "External ports taken or reserved, by address and protocol.",
        "gauge",
    );
    let first = shards.first().map(|s| &s["ports_in_use"]);
    for a in first.and_then(Value::as_array).into_iter().flatten() {
        let address = a["address"].as_str().unwrap_or("");
        for proto in ["tcp", "udp", "icmp"] {
            let l = [("address", address), ("proto", proto)];
            m.sample("tern_nat_ports_in_use", &l, &a[proto]);
        }
    }
    m.family(
        "tern_nat_backend_up",
        "1 while a DNAT backend takes new flows (health checks or an operator took it out: 0).",
        "gauge",
    );
    for f in rules["frontends"].as_array().into_iter().flatten() {
        let frontend = f["name"].as_str().unwrap_or("");
        for b in f["backends"].as_array().into_iter().flatten() {
            let up = Value::from(u8::from(b["up"].as_bool() == Some(true)));
            let backend = b["backend"].as_str().unwrap_or("");
            m.sample(
                "tern_nat_backend_up",
                &[("frontend", frontend), ("backend", backend)],
                &up,
            );
        }
    }
}

fn entries(v: &Value) -> impl Iterator<Item = (&str, &Value)> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v))
}

#[derive(Default)]
pub(super) struct Metrics {
    pub(super) text: String,
}

impl Metrics {
    fn family(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// A counter family with one sample per key of the JSON object `by`, the key as label
    /// `label` (drops by reason, events by name).
    fn counters_by(&mut self, name: &str, help: &str, label: &str, by: &Value) {
        self.family(name, help, "counter");
        for (key, v) in entries(by) {
            self.sample(name, &[(label, key)], v);
        }
    }

    /// One sample; values that are not numbers (a source that did not answer) are left out.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &Value) {
        let Some(v) = value.as_f64() else {
            return;
        };
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let labels = match labels.is_empty() {
            true => String::new(),
            false => format!("{{{}}}", labels.join(",")),
        };
        let _ = writeln!(self.text, "{name}{labels} {v}");
    }
}

/// Label values escape backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exposition_format() {
        let mut m = Metrics::default();
        fib(
            &mut m,
            &json!({"ipv4_routes": 3, "ipv6_routes": 1, "ipv4_bytes": 10, "ipv6_bytes": 20,
                    "ipv4_winner_changes": 4, "ipv6_winner_changes": 1,
                    "ipv4_by_source": {"ebgp": 2, "local": 1}, "ipv6_by_source": {}}),
        );
        bgp(
            &mut m,
            &json!({"neighbors": [{"name": "up\"stream", "address": "192.0.2.2", "state": "Established",
                    "prefixes_ipv4": 2, "prefixes_ipv6": 0, "messages_in": 7}]}),
        );
        nat(
            &mut m,
            &json!({"shards": [{"shard": 0, "capacity": 65536, "mappings": 2, "created": 9,
                    "expired": 4, "early_dropped": 0, "deleted": 1,
                    "by_class": {"udp": 2, "tcp_established": 1},
                    "ports_in_use": [{"address": "203.0.113.1", "tcp": 1, "udp": 2, "icmp": 0}],
                    "sessions": []}]}),
            &json!({"frontends": [{"name": "web", "backends": [
                    {"backend": "192.0.2.10:80", "up": true},
                    {"backend": "192.0.2.11:80", "up": false}]}]}),
        );
        let t = m.text;
        assert!(t.contains("# TYPE tern_fib_routes gauge\n"), "{t}");
        assert!(
            t.contains("tern_nat_sessions{shard=\"0\",class=\"udp\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("tern_nat_sessions_created_total{shard=\"0\"} 9\n"),
            "{t}"
        );
        assert!(
            t.contains("tern_nat_ports_in_use{address=\"203.0.113.1\",proto=\"udp\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("tern_nat_backend_up{frontend=\"web\",backend=\"192.0.2.11:80\"} 0\n"),
            "{t}"
        );
        assert!(
            t.contains("tern_nat_backend_up{frontend=\"web\",backend=\"192.0.2.10:80\"} 1\n"),
            "{t}"
        );
        assert!(t.contains("tern_fib_routes{family=\"ipv4\"} 3\n"), "{t}");
        assert!(
            t.contains("tern_fib_routes_by_source{family=\"ipv4\",source=\"ebgp\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "tern_bgp_peer_established{peer=\"up\\\"stream\",address=\"192.0.2.2\"} 1\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "tern_bgp_peer_messages_in_total{peer=\"up\\\"stream\",address=\"192.0.2.2\"} 7\n"
            ),
            "{t}"
        );
        // A field the source did not give is no sample (never a made-up zero).
        assert!(!t.contains("tern_bgp_peer_updates_in_total{"), "{t}");
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or("").to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                assert!(declared.contains(name), "{line}");
            }
        }
    }
}
