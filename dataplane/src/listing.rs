//! `show routes` at any table size: the answer is never built whole. The ctl connection's
//! thread asks the control plane for one page at a time (at most [`PAGE`] prefixes looked
//! at per page, resumed from a cursor in prefix order) and writes each page's rows out
//! before it asks for the next, so the control plane answers other requests, resolves
//! neighbours and installs routes between pages, and memory holds one page, not the table.
//! Each page is consistent; the whole listing is not one snapshot (as a netlink dump).
//!
//! On the wire (one JSON value per line): `{"stream":"routes"}`, then `{"row":{…}}` per
//! route, then `{"end":{"count":N,"fib":{…}}}`; an error ends it as `{"error":"…"}`.

use std::sync::mpsc::{self, SyncSender};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use lpm::rib::Source;
use serde_json::Value;

use crate::control_msg::ControlMsg;

/// Prefixes the control plane looks at for one page (matching or not): what bounds its
/// time away from everything else (about a millisecond).
pub const PAGE: usize = 4096;

/// What `show routes [PREFIX [longer]] [source SOURCE] [limit N]` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteQuery {
    /// Only this prefix, or with `longer` every prefix inside it.
    pub prefix: Option<IpNet>,
    pub longer: bool,
    pub source: Option<Source>,
    /// At most this many rows.
    pub limit: Option<u64>,
}

impl RouteQuery {
    /// Parses the words after `show routes`.
    pub fn parse(words: &[&str]) -> Result<RouteQuery, String> {
        let mut q = RouteQuery::default();
        let mut rest = words.iter();
        while let Some(&w) = rest.next() {
            match w {
                "longer" if q.prefix.is_some() => q.longer = true,
                "source" => {
                    let name = rest.next().ok_or("source needs a name")?;
                    let source =
                        Source::ALL
                            .iter()
                            .find(|s| s.name() == *name)
                            .ok_or_else(|| {
                                let names: Vec<&str> =
                                    Source::ALL.iter().map(|s| s.name()).collect();
                                format!("{name:?} is not a source ({})", names.join(", "))
                            })?;
                    q.source = Some(*source);
                }
                "limit" => {
                    let n = rest.next().ok_or("limit needs a number")?;
                    q.limit = Some(n.parse().map_err(|_| format!("{n:?} is not a number"))?);
                }
                _ if q.prefix.is_none() => {
                    let net = crate::config::parse_prefix(w)
                        .map_err(|e| format!("{e} (expected a prefix, longer, source or limit)"))?;
                    q.prefix = Some(net);
                }
                _ => return Err(format!("{w:?}: unexpected after the query")),
            }
        }
        Ok(q)
    }

    /// Whether a route for `net` from `source` belongs in the answer.
    pub fn admits(&self, net: IpNet, source: Source) -> bool {
        let place = match self.prefix {
            None => true,
            Some(p) if self.longer => p.contains(&net),
            Some(p) => p == net,
        };
        place && self.source.is_none_or(|s| s == source)
    }

    /// Whether prefixes after `net` (in prefix order) can still be admitted: a query for a
    /// prefix ends past its last address.
    pub fn past(&self, net: IpNet) -> bool {
        match self.prefix {
            None => false,
            Some(p) => match (p, net) {
                (IpNet::V4(p), IpNet::V4(n)) => n.addr() > p.broadcast(),
                (IpNet::V6(p), IpNet::V6(n)) => n.addr() > p.broadcast(),
                _ => true,
            },
        }
    }

    /// Where a listing starts: the first prefix of the query's family and place.
    pub fn start(&self) -> Cursor {
        match self.prefix {
            Some(IpNet::V6(p)) => Cursor::V6(Some(Ipv6Net::new_assert(p.network(), 0)), true),
            Some(IpNet::V4(p)) => Cursor::V4(Some(Ipv4Net::new_assert(p.network(), 0)), true),
            None => Cursor::V4(None, false),
        }
    }
}

/// Where the next page starts: a family, and the prefix to resume from (`true`: that
/// prefix itself is included, `false`: after it; `None`: the family's first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cursor {
    V4(Option<Ipv4Net>, bool),
    V6(Option<Ipv6Net>, bool),
    /// The listing is complete.
    #[default]
    Done,
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct Page {
    pub rows: Vec<Value>,
    pub next: Cursor,
}

/// Asks the control plane for the page at `cursor`.
pub fn page(
    control: &SyncSender<ControlMsg>,
    query: &RouteQuery,
    cursor: Cursor,
) -> Result<Page, String> {
    let (tx, rx) = mpsc::channel();
    control
        .send(ControlMsg::RoutePage {
            query: query.clone(),
            cursor,
            reply: tx,
        })
        .map_err(|_| "the control plane has stopped".to_string())?;
    rx.recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the control plane did not answer".to_string())
}

/// Every page of a listing, one after another, each handed to `emit` before the next is
/// asked for; stops early when `emit` says so (the reader went away) or at the query's
/// limit. Returns how many rows were emitted.
pub fn each_page(
    control: &SyncSender<ControlMsg>,
    query: &RouteQuery,
    mut emit: impl FnMut(Vec<Value>) -> bool,
) -> Result<u64, String> {
    let mut cursor = query.start();
    let mut count = 0u64;
    while cursor != Cursor::Done {
        let mut p = page(control, query, cursor)?;
        if let Some(limit) = query.limit {
            p.rows.truncate(limit.saturating_sub(count) as usize);
        }
        count += p.rows.len() as u64;
        if !emit(p.rows) || query.limit.is_some_and(|l| count >= l) {
            break;
        }
        cursor = p.next;
    }
    Ok(count)
}

/// Whether a ctl request is a route listing (streamed), and its query.
pub fn route_listing(words: &[String]) -> Option<Result<RouteQuery, String>> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["show", "routes", rest @ ..] => Some(RouteQuery::parse(rest)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_refuse_with_the_word() {
        let q = RouteQuery::parse(&["198.18.0.0/15", "longer", "source", "static", "limit", "5"])
            .expect("query");
        assert_eq!(q.prefix, Some("198.18.0.0/15".parse().expect("net")));
        assert!(q.longer && q.source == Some(Source::Static) && q.limit == Some(5));
        assert!(q.admits("198.19.1.0/24".parse().expect("net"), Source::Static));
        assert!(!q.admits("198.20.0.0/24".parse().expect("net"), Source::Static));
        assert!(!q.admits("198.19.1.0/24".parse().expect("net"), Source::Ebgp));
        assert!(q.past("198.20.0.0/24".parse().expect("net")));
        assert!(!q.past("198.19.255.0/24".parse().expect("net")));
        let err = RouteQuery::parse(&["198.18.0.1/15"]).expect_err("host bits");
        assert!(err.contains("host bits"), "{err}");
        let err = RouteQuery::parse(&["source", "rip"]).expect_err("source");
        assert!(err.contains("\"rip\" is not a source"), "{err}");
        let err = RouteQuery::parse(&["limit", "many"]).expect_err("limit");
        assert!(err.contains("\"many\" is not a number"), "{err}");
        let err = RouteQuery::parse(&["10.0.0.0/8", "10.0.0.0/8"]).expect_err("twice");
        assert!(err.contains("unexpected"), "{err}");
    }
}
