//! The control plane's window into the workers' NAT shards: `tern ctl show conntrack`,
//! `tern ctl conntrack delete`, and rule changes. A shard belongs to its worker, so the
//! control plane posts a request to the worker's mailbox and the worker answers between
//! bursts (it looks once per poll loop).

use std::net::Ipv4Addr;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::pipeline::nat::Stage;

pub enum NatRequest {
    /// The shard's counters.
    Summary { reply: SyncSender<Value> },
    /// Sessions `filter` matches, from slot `from` on (see [`SessionPage`]).
    Page {
        filter: Filter,
        from: u32,
        reply: SyncSender<SessionPage>,
    },
    Delete {
        filter: Filter,
        reply: SyncSender<usize>,
    },
    /// New rules; the worker answers once it uses them, so a `tern ctl nat ...` that
    /// returned is in effect for the next packet.
    Rules {
        rules: Arc<nat::Rules>,
        applied: SyncSender<()>,
    },
}

/// Part of a shard's sessions, as `show conntrack` streams them. A worker answers a page
/// between bursts, so a page is bounded in rows and in the slots it scans: a listing of a
/// full table (or a filter that matches little of it) costs the worker many short pauses,
/// never a long one.
pub struct SessionPage {
    pub rows: Vec<Value>,
    /// The slot to ask for next; `None` when the shard has been scanned to its end.
    pub next: Option<u32>,
}

const PAGE_ROWS: usize = 1024;
const PAGE_SLOTS: usize = 16_384;

/// Which sessions a request is about: all of the given criteria must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub proto: Option<u8>,
    /// Any of the session's addresses (inside, external, remote).
    pub addr: Option<u32>,
    /// Any of the session's ports.
    pub port: Option<u16>,
}

impl Filter {
    /// Parses `proto P`, `addr A`, `port N` pairs.
    pub fn parse(words: &[&str]) -> Result<Filter, String> {
        let mut f = Filter::default();
        let mut it = words.iter();
        while let Some(&w) = it.next() {
            let v = it.next().ok_or_else(|| format!("{w} needs a value"))?;
            match w {
                "proto" => {
                    let p = nat::flow::proto_by_name(v);
                    f.proto = Some(p.ok_or_else(|| format!("{v:?} is not a protocol"))?);
                }
                "addr" => {
                    let a: Ipv4Addr = v
                        .parse()
                        .map_err(|_| format!("{v:?} is not an IPv4 address"))?;
                    f.addr = Some(a.into());
                }
                "port" => f.port = Some(v.parse().map_err(|_| format!("{v:?} is not a port"))?),
                other => return Err(format!("unknown filter {other:?} (proto, addr, port)")),
            }
        }
        Ok(f)
    }

    pub fn matches(&self, s: &nat::Session) -> bool {
        let (o, r) = (&s.orig, &s.reply);
        self.proto.is_none_or(|p| o.proto == p)
            && self
                .addr
                .is_none_or(|a| [o.src, o.dst, r.src, r.dst].contains(&a))
            && self
                .port
                .is_none_or(|p| [o.sport, o.dport, r.sport, r.dport].contains(&p))
    }
}

fn endpoint(addr: u32, port: u16) -> String {
    nat::Endpoint { addr, port }.to_string()
}

/// One session as `show conntrack` prints it: the original direction as it arrived and
/// the reply direction as it arrives.
pub fn session_row(s: &nat::Session, now: u64, idle_timeout: u64) -> Value {
    let kind = match s.kind {
        nat::Kind::Snat => "snat",
        nat::Kind::Dnat => "dnat",
        nat::Kind::Hairpin => "hairpin",
        nat::Kind::Loopback => "loopback",
    };
    json!({
        "proto": nat::flow::proto_name(s.orig.proto),
        "kind": kind,
        "class": s.class.name(),
        "state": if s.orig.proto == nat::flow::TCP { s.tcp.name() } else if s.replied { "replied" } else { "unreplied" },
        "orig_src": endpoint(s.orig.src, s.orig.sport),
        "orig_dst": endpoint(s.orig.dst, s.orig.dport),
        "reply_src": endpoint(s.reply.src, s.reply.sport),
        "reply_dst": endpoint(s.reply.dst, s.reply.dport),
        "packets": s.packets,
        "age_s": now.saturating_sub(s.created) / 1000,
        "expires_s": (s.last + idle_timeout).saturating_sub(now) / 1000,
    })
}

/// Answers a request on the worker that owns `stage`.
pub fn serve(stage: &mut Stage, req: NatRequest) {
    let now = stage.now;
    match req {
        NatRequest::Rules { rules, applied } => {
            stage.set_rules(rules);
            let _ = applied.try_send(());
        }
        NatRequest::Delete { filter, reply } => {
            let n = stage.shard.delete(|s| filter.matches(s), now);
            let _ = reply.try_send(n);
        }
        NatRequest::Page {
            filter,
            from,
            reply,
        } => {
            let _ = reply.try_send(page(&stage.shard, &filter, from, now));
        }
        NatRequest::Summary { reply } => {
            let _ = reply.try_send(summary(&stage.shard));
        }
    }
}

fn page(shard: &nat::Shard, filter: &Filter, from: u32, now: u64) -> SessionPage {
    let sessions = shard.sessions();
    let idle = shard.rules().timeouts;
    let end = (from as usize)
        .saturating_add(PAGE_SLOTS)
        .min(sessions.capacity());
    let mut rows = Vec::new();
    for (slot, s) in sessions.slots(from as usize..end) {
        if rows.len() == PAGE_ROWS {
            return SessionPage {
                rows,
                next: Some(slot),
            };
        }
        if filter.matches(s) {
            let mut row = session_row(s, now, idle.idle(s.class));
            row["shard"] = json!(shard.id());
            rows.push(row);
        }
    }
    SessionPage {
        rows,
        next: (end < sessions.capacity()).then_some(end as u32),
    }
}

/// A shard's counters: sessions by class, mappings, ports in use per external address.
fn summary(shard: &nat::Shard) -> Value {
    let by_class: serde_json::Map<String, Value> = nat::table::CLASSES
        .iter()
        .map(|c| (c.name().to_string(), json!(shard.sessions().count(*c))))
        .collect();
    let st = shard.stats;
    let ports = shard.ports();
    let utilisation: Vec<Value> = ports
        .addresses()
        .iter()
        .map(|&a| {
            json!({
                "address": Ipv4Addr::from(a).to_string(),
                "tcp": ports.in_use(a, nat::ports::Space::Tcp),
                "udp": ports.in_use(a, nat::ports::Space::Udp),
                "icmp": ports.in_use(a, nat::ports::Space::Icmp),
            })
        })
        .collect();
    json!({
        "shard": shard.id(),
        "capacity": shard.sessions().capacity(),
        "sessions_total": shard.sessions().len(),
        "by_class": by_class,
        "mappings": shard.mappings().len(),
        "subscribers": shard.mappings().subscribers(),
        "bytes": shard.bytes(),
        "created": st.created,
        "expired": st.expired,
        "early_dropped": st.early_dropped,
        "deleted": st.deleted,
        "syns_held": shard.held_syns(),
        "fragments_held": shard.held_fragments(),
        "icmp_errors_translated": st.icmp_errors_translated,
        "ports_in_use": utilisation,
    })
}

/// `show conntrack [proto P] [addr A] [port N] [limit N]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionQuery {
    pub filter: Filter,
    pub limit: Option<u64>,
}

impl SessionQuery {
    /// The words after `show conntrack`.
    pub fn parse(words: &[&str]) -> Result<SessionQuery, String> {
        match words {
            [head @ .., "limit", n] => Ok(SessionQuery {
                filter: Filter::parse(head)?,
                limit: Some(
                    n.parse()
                        .map_err(|_| format!("limit {n:?} is not a count"))?,
                ),
            }),
            _ => Ok(SessionQuery {
                filter: Filter::parse(words)?,
                limit: None,
            }),
        }
    }
}

/// A session listing's query, if `words` ask for one (`show conntrack` other than
/// `summary`).
pub fn session_listing(words: &[String]) -> Option<Result<SessionQuery, String>> {
    match words {
        [show, conntrack, rest @ ..] if show == "show" && conntrack == "conntrack" => {
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            (rest != ["summary"]).then(|| SessionQuery::parse(&rest))
        }
        _ => None,
    }
}

/// The workers' NAT mailboxes: how the control plane and the ctl server reach the shards.
/// Each request waits for one worker's answer (a worker looks between bursts) and no
/// longer than [`ANSWER`].
#[derive(Clone)]
pub struct Shards(Vec<SyncSender<NatRequest>>);

impl Shards {
    fn ask<T>(
        &self,
        shard: usize,
        request: impl FnOnce(SyncSender<T>) -> NatRequest,
    ) -> Result<T, String> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.0[shard]
            .send(request(tx))
            .map_err(|_| "a worker has stopped".to_string())?;
        rx.recv_timeout(ANSWER)
            .map_err(|_| "a worker did not answer".to_string())
    }

    /// Every shard's counters.
    pub fn summaries(&self) -> Result<Vec<Value>, String> {
        (0..self.0.len())
            .map(|i| self.ask(i, |reply| NatRequest::Summary { reply }))
            .collect()
    }

    /// Hands the sessions `query` selects to `emit` page by page, shard after shard,
    /// until the limit, the end, or `emit` returning false (the reader went away).
    /// Returns how many rows were emitted.
    pub fn each_page(
        &self,
        query: &SessionQuery,
        emit: &mut dyn FnMut(Vec<Value>) -> bool,
    ) -> Result<u64, String> {
        let mut left = query.limit.unwrap_or(u64::MAX);
        let mut count = 0;
        for shard in 0..self.0.len() {
            let mut from = Some(0);
            while let (Some(at), true) = (from, left > 0) {
                let page = self.ask(shard, |reply| NatRequest::Page {
                    filter: query.filter.clone(),
                    from: at,
                    reply,
                })?;
                let mut rows = page.rows;
                rows.truncate(left.min(usize::MAX as u64) as usize);
                left -= rows.len() as u64;
                count += rows.len() as u64;
                from = page.next;
                if !rows.is_empty() && !emit(rows) {
                    return Ok(count);
                }
            }
        }
        Ok(count)
    }

    /// Hands new rules to every worker and waits until each uses them.
    fn set_rules(&self, rules: &Arc<nat::Rules>) -> Result<(), String> {
        // Every worker first, then the answers: an idle worker reads its mailbox within
        // one sleep, and they all sleep at once.
        let (applied, answers) = std::sync::mpsc::sync_channel(self.0.len());
        for m in &self.0 {
            let req = NatRequest::Rules {
                rules: rules.clone(),
                applied: applied.clone(),
            };
            m.send(req)
                .map_err(|_| "a worker has stopped".to_string())?;
        }
        for _ in &self.0 {
            answers
                .recv_timeout(ANSWER)
                .map_err(|_| "a worker did not take the new rules".to_string())?;
        }
        Ok(())
    }

    /// Deletes the sessions `filter` matches on every shard; returns how many.
    pub fn delete(&self, filter: &Filter) -> Result<usize, String> {
        (0..self.0.len())
            .map(|i| {
                self.ask(i, |reply| NatRequest::Delete {
                    filter: filter.clone(),
                    reply,
                })
            })
            .sum()
    }
}

/// The control plane's NAT state: the current rules (the workers hold copies) and the
/// workers' mailboxes.
pub struct NatControl {
    rules: Arc<nat::Rules>,
    shards: Shards,
    /// The external port map, to reserve the ports of forwards added at run time.
    ports: Arc<nat::PortMap>,
}

/// How long the control plane waits for a worker's answer.
const ANSWER: std::time::Duration = std::time::Duration::from_secs(2);

impl NatControl {
    pub fn new(
        rules: Arc<nat::Rules>,
        mailboxes: Vec<SyncSender<NatRequest>>,
        ports: Arc<nat::PortMap>,
    ) -> NatControl {
        NatControl {
            rules,
            shards: Shards(mailboxes),
            ports,
        }
    }

    /// The shards' mailboxes, for the ctl server's streamed listings.
    pub fn shards(&self) -> Shards {
        self.shards.clone()
    }

    pub fn ctl(&mut self, w: &[&str]) -> Result<Value, String> {
        match w {
            // The counters without the session list: what a metrics scrape wants.
            ["show", "conntrack", "summary"] => Ok(json!({ "shards": self.shards.summaries()? })),
            ["show", "conntrack", rest @ ..] => self.show(&SessionQuery::parse(rest)?),
            ["conntrack", "delete", rest @ ..] => {
                let deleted = self.shards.delete(&Filter::parse(rest)?)?;
                Ok(json!({ "deleted": deleted }))
            }
            ["show", "nat"] => Ok(self.show_rules()),
            ["nat", "backend", frontend, backend, state @ ("up" | "down")] => {
                let e: nat::Endpoint = backend.parse()?;
                self.change(|r| {
                    let f = r
                        .frontend_mut(frontend)
                        .ok_or_else(|| format!("no frontend {frontend:?}"))?;
                    let i = f
                        .backends
                        .iter()
                        .position(|b| *b == e)
                        .ok_or_else(|| format!("{backend} is not a backend of {frontend}"))?;
                    f.set_up(i, *state == "up");
                    Ok(())
                })
            }
            ["nat", "forward", "add", name, proto, external, backends @ ..] => {
                let proto = nat::flow::frontend_proto(proto)
                    .ok_or_else(|| format!("{proto:?} is not tcp or udp"))?;
                let external: nat::Endpoint = external.parse()?;
                let backends = backends
                    .iter()
                    .map(|b| b.parse())
                    .collect::<Result<Vec<nat::Endpoint>, _>>()?;
                let f = nat::Frontend::new(name.to_string(), proto, external, backends);
                let ports = self.ports.clone();
                let space = nat::ports::Space::of(proto);
                self.change(|r| {
                    if r.frontends.iter().any(|o| o.name == f.name) {
                        return Err(format!("{:?} exists", f.name));
                    }
                    r.add_frontend(f)?;
                    // The external port leaves the SNAT port space, unless a mapping holds
                    // it now (then the forward would hijack that mapping's flows).
                    if !ports.try_reserve(external.addr, space, external.port) {
                        return Err(format!(
                            "{external} is in use by a NAT mapping or another forward"
                        ));
                    }
                    Ok(())
                })
            }
            ["nat", "forward", "del", name] => {
                let ports = self.ports.clone();
                self.change(|r| {
                    let Some(f) = r.frontends.iter().find(|f| f.name == *name) else {
                        return Err(format!("no frontend {name:?}"));
                    };
                    let (external, space) = (f.external, nat::ports::Space::of(f.proto));
                    r.remove_frontend(name);
                    ports.unreserve(external.addr, space, external.port);
                    Ok(())
                })
            }
            _ => Err(format!("unknown NAT command {:?}", w.join(" "))),
        }
    }

    /// Applies `edit` to a copy of the rules and hands the result to every worker.
    /// Sessions stay on their backends; new flows follow the new rules.
    fn change(
        &mut self,
        edit: impl FnOnce(&mut nat::Rules) -> Result<(), String>,
    ) -> Result<Value, String> {
        let mut next = (*self.rules).clone();
        edit(&mut next)?;
        self.rules = Arc::new(next);
        self.shards.set_rules(&self.rules)?;
        Ok(json!({"ok": true}))
    }

    /// The listing gathered into one answer, for in-process callers (the ctl socket
    /// streams it instead): the counters and at most `limit` (default 10 000) sessions.
    fn show(&self, query: &SessionQuery) -> Result<Value, String> {
        let query = SessionQuery {
            limit: Some(query.limit.unwrap_or(10_000)),
            ..query.clone()
        };
        let mut sessions = Vec::new();
        self.shards.each_page(&query, &mut |rows| {
            sessions.extend(rows);
            true
        })?;
        Ok(json!({ "shards": self.shards.summaries()?, "sessions": sessions }))
    }

    fn show_rules(&self) -> Value {
        let r = &self.rules;
        let t = &r.timeouts;
        json!({
            "pool": r.pool.iter().map(|&a| Ipv4Addr::from(a).to_string()).collect::<Vec<_>>(),
            "filtering": r.filtering.name(),
            "capacity_per_worker": r.capacity,
            "max_sessions_per_host": r.max_sessions_per_host,
            "max_ports_per_host": r.max_ports_per_host,
            "timeouts_s": {
                "udp": t.udp / 1000, "tcp_established": t.tcp_established / 1000,
                "tcp_transitory": t.tcp_transitory / 1000, "icmp": t.icmp / 1000, "other": t.other / 1000,
            },
            "frontends": r.frontends.iter().map(|f| json!({
                "name": f.name,
                "proto": nat::flow::proto_name(f.proto),
                "external": f.external.to_string(),
                "table_size": f.table_len(),
                "backends": f.backends.iter().zip(&f.up).map(|(b, up)| json!({"backend": b.to_string(), "up": up})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}
