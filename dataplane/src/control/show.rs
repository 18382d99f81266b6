//! `tern ctl`: the requests the control thread answers, and their JSON.

use std::net::IpAddr;

use ipnet::IpNet;
use lpm::rib::{Rib, Source};
use serde_json::{json, Value};

use crate::adjacency::Adjacency;
use crate::config::{format_mac, parse_prefix, StaticRoute};
use crate::counters::{self};
use crate::listing;

use super::neighbors::{Neighbor, State};
use super::Control;

impl Control {
    pub(super) fn ctl(&mut self, words: &[String]) -> Result<Value, String> {
        let w: Vec<&str> = words.iter().map(|s| s.as_str()).collect();
        match w.as_slice() {
            ["show", "interfaces"] => Ok(self.show_interfaces()),
            ["show", "interfaces", name] => {
                let all = self.show_interfaces();
                let one = all
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|i| i["name"] == *name);
                one.cloned()
                    .map(|i| Value::Array(vec![i]))
                    .ok_or_else(|| format!("no interface or tunnel is named {name:?}"))
            }
            ["show", "routes", rest @ ..] => {
                listing::RouteQuery::parse(rest).map(|q| self.show_routes(&q))
            }
            ["show", "fib"] => Ok(self.fib_summary()),
            ["show", "route", prefix] => self.show_route(prefix),
            ["show", "neighbors"] => Ok(self.show_neighbors()),
            ["show", "counters"] => Ok(self.show_counters()),
            ["show", "tunnels"] => Ok(self.show_tunnels()),
            ["show", "conntrack" | "nat", ..] | ["conntrack" | "nat", ..] => match &mut self.nat {
                Some(nat) => nat.ctl(&w),
                None => Err("NAT is not configured (no [nat] section)".into()),
            },
            ["route", "add", prefix, rest @ ..] => {
                let route = self.parse_route(prefix, rest)?;
                self.add_static(route)?;
                Ok(json!({"ok": true}))
            }
            ["route", "del", prefix] => {
                let prefix = parse_prefix(prefix)?;
                if self.remove_static(prefix)? {
                    Ok(json!({"ok": true}))
                } else {
                    Err(format!("no static route for {prefix}"))
                }
            }
            _ => Err(format!(
                "unknown command {:?}; `tern ctl help` lists them",
                words.join(" ")
            )),
        }
    }

    pub(super) fn parse_route(&self, prefix: &str, rest: &[&str]) -> Result<StaticRoute, String> {
        let prefix = parse_prefix(prefix)?;
        let mut route = StaticRoute {
            prefix,
            via: None,
            interface: None,
            tunnel: None,
        };
        let mut it = rest.iter();
        while let Some(word) = it.next() {
            match (*word, it.next()) {
                ("via", Some(gw)) => {
                    let gw: IpAddr = gw
                        .parse()
                        .map_err(|_| format!("{gw:?} is not an address"))?;
                    if gw.is_ipv4() != prefix.addr().is_ipv4() {
                        return Err(format!("{gw} is not of the same family as {prefix}"));
                    }
                    route.via = Some(gw);
                }
                ("dev", Some(name)) => {
                    if let Some(t) = self.tunnels.position(name) {
                        route.tunnel = Some(t as usize);
                    } else {
                        route.interface = Some(
                            self.ports
                                .iter()
                                .position(|p| p.name == *name)
                                .ok_or_else(|| format!("no interface or tunnel {name:?}"))?,
                        );
                    }
                }
                (other, _) => {
                    return Err(format!(
                        "unexpected {other:?}: expected `via ADDR` or `dev IFNAME`"
                    ))
                }
            }
        }
        if route.tunnel.is_some() && route.via.is_some() {
            return Err("a route into a tunnel has no gateway: use `dev TUNNEL` alone".into());
        }
        Ok(route)
    }

    /// Physical ports, then tunnels: the order of the per-interface counters.
    pub(super) fn interface_count(&self) -> usize {
        self.ports.len() + self.tunnels.len()
    }

    pub(super) fn show_interfaces(&self) -> Value {
        let totals = counters::sum(&self.counters, self.interface_count());
        let ports = self.ports.iter().zip(&totals.ports).enumerate().map(|(i, (p, c))| {
            json!({
                "name": p.name, "type": "ethernet", "mac": format_mac(&p.mac), "mtu": p.mtu,
                "backend": self.tx.get(i).map(|t| t.status()).unwrap_or(Value::Null),
                "addresses": p.v4.iter().map(|n| n.to_string()).chain(p.v6.iter().map(|n| n.to_string())).collect::<Vec<_>>(),
                "link_local": p.link_local.to_string(),
                "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes, "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes, "drops": c.drops,
            })
        });
        Value::Array(ports.chain(self.tunnel_rows(&totals)).collect())
    }

    pub(super) fn show_tunnels(&self) -> Value {
        let totals = counters::sum(&self.counters, self.interface_count());
        Value::Array(self.tunnel_rows(&totals).collect())
    }

    /// One row per tunnel with its counters (the slots after the ports in `totals`).
    pub(super) fn tunnel_rows<'a>(
        &'a self,
        totals: &'a counters::Totals,
    ) -> impl Iterator<Item = Value> + 'a {
        let counts = totals.ports.get(self.ports.len()..).unwrap_or(&[]);
        self.tunnels
                .iter()
                .zip(counts)
                .map(|(t, c)| {
                    let s = &t.spec;
                    json!({
                        "name": s.name, "type": "tunnel", "kind": s.kind.name(),
                        "local": s.local.to_string(), "remote": s.remote.to_string(),
                        "key": s.key, "sequence": s.sequence, "checksum": s.checksum,
                        "ttl": match s.ttl { tunnels::Ttl::Inherit => json!("inherit"), tunnels::Ttl::Fixed(n) => json!(n) },
                        "dscp": match s.dscp { tunnels::Dscp::Inherit => json!("inherit"), tunnels::Dscp::Fixed(n) => json!(n) },
                        "mtu": t.mtu(), "configured_mtu": s.mtu, "overhead": s.overhead(),
                        "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes, "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes, "drops": c.drops,
                    })
                })
    }

    pub(super) fn describe(&self, adjacency: Option<u32>) -> Value {
        let Some(a) = adjacency else {
            return json!({"state": "unresolved"});
        };
        match self.adjacencies.get(a) {
            Some(Adjacency::Local) => json!({"type": "local"}),
            Some(Adjacency::Broadcast) => json!({"type": "broadcast"}),
            Some(Adjacency::Glean { port }) => {
                json!({"type": "connected", "interface": self.ports[*port as usize].name})
            }
            Some(Adjacency::Incomplete { port, ip }) => {
                json!({"type": "neighbor", "via": ip.to_string(), "interface": self.ports[*port as usize].name, "state": "incomplete"})
            }
            Some(Adjacency::Neighbor { port, ip, mac }) => {
                json!({"type": "neighbor", "via": ip.to_string(), "interface": self.ports[*port as usize].name, "mac": format_mac(mac)})
            }
            Some(Adjacency::Ecmp(m)) => json!({"type": "ecmp", "members": m}),
            Some(Adjacency::Tunnel { tunnel, via }) => {
                let name = self.tunnels.get(*tunnel).map(|t| t.spec.name.clone());
                json!({"type": "tunnel", "tunnel": name, "remote_resolved": *via != lpm::NO_ROUTE})
            }
            None => json!({"type": "missing"}),
        }
    }

    pub(super) fn route_row<N: std::fmt::Display, A>(
        &self,
        r: &lpm::rib::Installed<N, A>,
    ) -> Value {
        json!({"prefix": r.net.to_string(), "source": r.route.source.name(), "distance": r.route.distance, "next_hop": self.describe(r.next_hop)})
    }

    /// One page of a route listing: at most `listing::PAGE` prefixes looked at from
    /// `cursor`, the matching rows, and where the next page starts.
    pub(super) fn route_page(
        &self,
        q: &listing::RouteQuery,
        cursor: listing::Cursor,
    ) -> listing::Page {
        use listing::Cursor;
        match cursor {
            Cursor::V4(at, included) => {
                let v6_next = !matches!(q.prefix, Some(IpNet::V4(_)));
                let then = if v6_next {
                    Cursor::V6(None, false)
                } else {
                    Cursor::Done
                };
                let resume = |n| Cursor::V4(Some(n), false);
                self.scan(&self.rib4, (at, included), q, IpNet::V4, resume, then)
            }
            Cursor::V6(at, included) => {
                let resume = |n| Cursor::V6(Some(n), false);
                self.scan(
                    &self.rib6,
                    (at, included),
                    q,
                    IpNet::V6,
                    resume,
                    Cursor::Done,
                )
            }
            Cursor::Done => listing::Page::default(),
        }
    }

    /// [`Self::route_page`] in one family's RIB: from `at` (the prefix, and whether it is
    /// itself included), `resume` makes the cursor after the page's last prefix, `then` is
    /// where the listing goes when this family ends.
    pub(super) fn scan<F: lpm::Family>(
        &self,
        rib: &Rib<F>,
        (at, included): (Option<F::Net>, bool),
        q: &listing::RouteQuery,
        wrap: impl Fn(F::Net) -> IpNet,
        resume: impl Fn(F::Net) -> listing::Cursor,
        then: listing::Cursor,
    ) -> listing::Page
    where
        F::Addr: Ord,
        F::Net: std::fmt::Display,
    {
        use std::ops::Bound;
        let start = match &at {
            None => Bound::Unbounded,
            Some(n) if included => Bound::Included(n),
            Some(n) => Bound::Excluded(n),
        };
        let mut page = listing::Page::default();
        for (seen, r) in rib.installed_from(start).enumerate() {
            let net = wrap(r.net);
            if q.past(net) {
                break;
            }
            if q.admits(net, r.route.source) {
                page.rows.push(self.route_row(&r));
            }
            if seen + 1 == listing::PAGE {
                page.next = resume(r.net);
                return page;
            }
        }
        page.next = then;
        page
    }

    /// `show routes …` answered whole: for in-process callers (`Router::ctl`, tests);
    /// the ctl server streams the same pages instead (listing.rs).
    pub(super) fn show_routes(&self, q: &listing::RouteQuery) -> Value {
        let mut out = Vec::new();
        let mut cursor = q.start();
        let limit = q.limit.map_or(usize::MAX, |l| l as usize);
        while cursor != listing::Cursor::Done && out.len() < limit {
            let page = self.route_page(q, cursor);
            out.extend(page.rows);
            cursor = page.next;
        }
        out.truncate(limit);
        json!({"routes": out, "fib": self.fib_summary()})
    }

    /// `show route PREFIX`: that route; `show route ADDRESS`: the route a packet to the
    /// address takes, the longest prefix covering it (as `ip route get`).
    pub(super) fn show_route(&self, what: &str) -> Result<Value, String> {
        if let Ok(addr) = what.parse::<std::net::IpAddr>() {
            let row = match addr {
                std::net::IpAddr::V4(a) => (0..=32).rev().find_map(|len| {
                    let net = ipnet::Ipv4Net::new(a, len).ok()?.trunc();
                    self.rib4.get(&net).map(|r| self.route_row(&r))
                }),
                std::net::IpAddr::V6(a) => (0..=128).rev().find_map(|len| {
                    let net = ipnet::Ipv6Net::new(a, len).ok()?.trunc();
                    self.rib6.get(&net).map(|r| self.route_row(&r))
                }),
            };
            return row.ok_or_else(|| format!("no route to {addr}"));
        }
        let net: IpNet = what
            .parse()
            .map_err(|_| format!("{what:?} is neither an address nor a prefix"))?;
        let row = match net.trunc() {
            IpNet::V4(n) => self.rib4.get(&n).map(|r| self.route_row(&r)),
            IpNet::V6(n) => self.rib6.get(&n).map(|r| self.route_row(&r)),
        };
        row.ok_or_else(|| format!("no route {}", net.trunc()))
    }

    /// Route counts and memory of both FIBs: constant time, cheap enough to poll while a
    /// full table loads.
    pub(super) fn fib_summary(&self) -> Value {
        let by_source = |count: &dyn Fn(Source) -> usize| -> serde_json::Map<String, Value> {
            Source::ALL
                .iter()
                .map(|&s| (s.name().to_string(), json!(count(s))))
                .collect()
        };
        json!({
            "ipv4_routes": self.rib4.fib().len(), "ipv6_routes": self.rib6.fib().len(),
            "ipv4_bytes": self.rib4.fib().bytes(), "ipv6_bytes": self.rib6.fib().bytes(),
            "ipv4_groups": group_stats(self.rib4.fib().group_stats()),
            "ipv6_groups": group_stats(self.rib6.fib().group_stats()),
            "ipv4_by_source": by_source(&|s| self.rib4.winners(s)),
            "ipv6_by_source": by_source(&|s| self.rib6.winners(s)),
            "ipv4_winner_changes": self.rib4.winner_changes(),
            "ipv6_winner_changes": self.rib6.winner_changes(),
        })
    }

    pub(super) fn show_neighbors(&self) -> Value {
        let mut rows: Vec<(&IpAddr, &Neighbor)> = self.neighbors.iter().collect();
        rows.sort_by_key(|(ip, _)| **ip);
        Value::Array(
            rows.into_iter()
                .map(|(ip, n)| {
                    let (state, mac, extra) = match &n.state {
                        State::Incomplete { tries, held, .. } => ("incomplete", None, json!({"tries": tries, "held": held.len()})),
                        State::Reachable { mac, heard } => ("reachable", Some(format_mac(mac)), json!({"age_s": heard.elapsed().as_secs()})),
                        State::Static { mac } => ("static", Some(format_mac(mac)), json!({})),
                    };
                    json!({"address": ip.to_string(), "interface": self.ports[n.port as usize].name, "state": state, "mac": mac, "detail": extra})
                })
                .collect(),
        )
    }

    pub(super) fn show_counters(&self) -> Value {
        let t = counters::sum(&self.counters, self.interface_count());
        let drops: serde_json::Map<String, Value> = t
            .drops
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let events: serde_json::Map<String, Value> = t
            .events
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let names = self
            .ports
            .iter()
            .map(|p| p.name.clone())
            .chain(self.tunnels.iter().map(|t| t.spec.name.clone()));
        let reasons = |row: usize| -> serde_json::Map<String, Value> {
            t.reasons(row)
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect()
        };
        let interfaces: serde_json::Map<String, Value> = names
            .zip(&t.ports)
            .enumerate()
            .map(|(i, (name, c))| {
                let row = json!({
                    "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes,
                    "tx_packets": c.tx_packets, "tx_bytes": c.tx_bytes, "tx_errors": c.tx_errors,
                    "forwarded": c.forwarded, "punted": c.punted, "local": c.local,
                    "drops": c.drops, "drop_reasons": reasons(i),
                });
                (name, row)
            })
            .collect();
        let origin = t.ports.len();
        let originated = json!({
            "drops": t.drop_rows.get(origin).map_or(0, |r| r.iter().sum::<u64>()),
            "drop_reasons": reasons(origin),
        });
        let workers: Vec<Value> = self
            .counters
            .iter()
            .map(|w| {
                let (rx, tx) = w.packets();
                json!({"rx_packets": rx, "tx_packets": tx})
            })
            .collect();
        let s = &self.stats;
        json!({
            "interfaces": interfaces,
            "originated": originated,
            "workers": workers,
            "drops": drops,
            "events": events,
            "control": {"arp_requests_sent": s.arp_requests, "neighbor_solicitations_sent": s.ns_sent, "neighbors_resolved": s.resolved,
                        "resolutions_failed": s.failed, "held_dropped": s.held_dropped, "held_sent": s.held_sent},
        })
    }
}

/// A FIB's group pool as `show fib` prints it.
fn group_stats(g: lpm::GroupStats) -> Value {
    json!({
        "in_use": g.in_use,
        "free": g.free,
        "touched": g.high_water,
        "capacity": g.capacity,
        "limit": g.limit,
    })
}
