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
    Show {
        filter: Filter,
        limit: usize,
        reply: SyncSender<Value>,
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
        NatRequest::Show {
            filter,
            limit,
            reply,
        } => {
            let shard = &stage.shard;
            let t = shard.rules().timeouts;
            let sessions: Vec<Value> = shard
                .sessions()
                .iter()
                .filter(|(_, s)| filter.matches(s))
                .take(limit)
                .map(|(_, s)| session_row(s, now, t.idle(s.class)))
                .collect();
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
            let v = json!({
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
                "sessions": sessions,
            });
            let _ = reply.try_send(v);
        }
    }
}

/// The control plane's NAT state: the current rules (the workers hold copies) and the
/// workers' mailboxes.
pub struct NatControl {
    rules: Arc<nat::Rules>,
    mailboxes: Vec<SyncSender<NatRequest>>,
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
            mailboxes,
            ports,
        }
    }

    pub fn ctl(&mut self, w: &[&str]) -> Result<Value, String> {
        match w {
            // The counters without the session list: what a metrics scrape wants.
            ["show", "conntrack", "summary"] => self.show(Filter::default(), 0),
            ["show", "conntrack", rest @ ..] => self.show(Filter::parse(rest)?, 10_000),
            ["conntrack", "delete", rest @ ..] => self.delete(rest),
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
        // Every worker first, then the answers: an idle worker reads its mailbox within
        // one sleep, and they all sleep at once.
        let (applied, answers) = std::sync::mpsc::sync_channel(self.mailboxes.len());
        for m in &self.mailboxes {
            let req = NatRequest::Rules {
                rules: self.rules.clone(),
                applied: applied.clone(),
            };
            m.send(req)
                .map_err(|_| "a worker has stopped".to_string())?;
        }
        for _ in &self.mailboxes {
            answers
                .recv_timeout(ANSWER)
                .map_err(|_| "a worker did not take the new rules".to_string())?;
        }
        Ok(json!({"ok": true}))
    }

    /// Every shard's counters and its first `limit` sessions that `filter` matches.
    fn show(&self, filter: Filter, limit: usize) -> Result<Value, String> {
        let mut shards = Vec::new();
        for m in &self.mailboxes {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            let req = NatRequest::Show {
                filter: filter.clone(),
                limit,
                reply: tx,
            };
            m.send(req)
                .map_err(|_| "a worker has stopped".to_string())?;
            shards.push(
                rx.recv_timeout(ANSWER)
                    .map_err(|_| "a worker did not answer".to_string())?,
            );
        }
        Ok(json!({ "shards": shards }))
    }

    fn delete(&self, words: &[&str]) -> Result<Value, String> {
        let filter = Filter::parse(words)?;
        let mut deleted = 0;
        for m in &self.mailboxes {
            let (tx, rx) = std::sync::mpsc::sync_channel(1);
            m.send(NatRequest::Delete {
                filter: filter.clone(),
                reply: tx,
            })
            .map_err(|_| "a worker has stopped".to_string())?;
            deleted += rx
                .recv_timeout(ANSWER)
                .map_err(|_| "a worker did not answer".to_string())?;
        }
        Ok(json!({ "deleted": deleted }))
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
