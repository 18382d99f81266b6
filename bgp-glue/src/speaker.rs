//! The speaker: one thread that owns the RIB and the peer table. Sessions send it what they
//! decode; it applies import policy, runs the decision process once per batch of messages,
//! and hands the FIB its changes in one call. It also runs the graceful-restart timers,
//! sends tern's own announcements (withdrawn while the dataplane is unhealthy) and answers
//! `tern ctl show bgp …`.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::codec::{err, Attributes, Family, Notification, Open, Update};
use crate::config::{BgpConfig, Import, PeerConfig};
use crate::input::{Event, Input};
use crate::rib::{Path, PeerFacts, PeerId, Rib};
use crate::seed::{self, Seed, SEED};
use crate::session::{Command, Session, Status};
use crate::RouteSink;

/// Most session events taken before the decision process runs and the FIB hears of it.
const BATCH: usize = 4096;
const TICK: Duration = Duration::from_millis(100);

struct Peer {
    config: PeerConfig,
    commands: Sender<Command>,
    status: Arc<Mutex<Status>>,
    thread: Option<JoinHandle<()>>,
    facts: PeerFacts,
    /// The peer's OPEN while the session is up.
    open: Option<Open>,
    families: Vec<Family>,
    /// Prefixes accepted from this peer, per family.
    accepted: [usize; 2],
    /// Received prefixes refused by import policy or loop detection.
    filtered: u64,
    /// Graceful restart: stale routes are kept until this instant (restart timer while
    /// down, stale timer once back), and families still owing End-of-RIB.
    stale_until: Option<Instant>,
    stale_families: BTreeSet<Family>,
    removed: bool,
}

pub struct Speaker {
    config: BgpConfig,
    rib: Rib,
    peers: Vec<Peer>,
    facts: Vec<PeerFacts>,
    sink: Box<dyn RouteSink>,
    healthy: bool,
    events: Sender<Input>,
    registry: Registry,
    started: Instant,
    /// Batches handed to the FIB and changes in them.
    batches: u64,
    changes: u64,
    /// Routes seeded from an MRT dump.
    seed: Option<Seed>,
}

impl Speaker {
    pub fn new(config: BgpConfig, sink: Box<dyn RouteSink>, events: Sender<Input>) -> Speaker {
        Speaker {
            rib: Rib::new(config.multipath),
            config,
            peers: Vec::new(),
            facts: Vec::new(),
            sink,
            healthy: true,
            events,
            registry: Registry::default(),
            started: Instant::now(),
            batches: 0,
            changes: 0,
            seed: None,
        }
    }

    /// Starts a session thread for `config`.
    pub fn add_peer(&mut self, config: PeerConfig) -> Result<PeerId, String> {
        if self
            .peers
            .iter()
            .any(|p| !p.removed && p.config.address == config.address)
        {
            return Err(format!("a peer {} exists already", config.address));
        }
        let id = self.peers.len() as PeerId;
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Mutex::new(Status::default()));
        let session = Session {
            id,
            config: config.clone(),
            router_id: self.config.router_id,
            local_as: self.config.local_as,
            events: self.events.clone(),
            commands: rx,
            status: status.clone(),
        };
        if let Ok(mut r) = self.registry.lock() {
            r.insert(config.address, tx.clone());
        }
        let thread = std::thread::Builder::new()
            .name(format!("bgp-{}", config.name))
            .spawn(move || session.run())
            .map_err(|e| e.to_string())?;
        let facts = PeerFacts {
            ebgp: config.remote_as != self.config.local_as,
            router_id: Ipv4Addr::UNSPECIFIED,
            address: config.address,
        };
        self.facts.push(facts);
        self.peers.push(Peer {
            config,
            commands: tx,
            status,
            thread: Some(thread),
            facts,
            open: None,
            families: Vec::new(),
            accepted: [0; 2],
            filtered: 0,
            stale_until: None,
            stale_families: BTreeSet::new(),
            removed: false,
        });
        Ok(id)
    }

    pub fn run(
        mut self,
        input: Receiver<Input>,
        listener: Option<TcpListener>,
        stop: Arc<AtomicBool>,
    ) {
        let accept = listener.map(|l| {
            let registry = self.registry.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("bgp-listen".into())
                .spawn(move || listen(l, registry, &stop))
        });
        loop {
            let first = match input.recv_timeout(TICK) {
                Ok(i) => Some(i),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stopping = false;
            let mut pending = first.into_iter().collect::<Vec<_>>();
            // Drain what else is waiting, up to a batch: one decision run for all of it.
            while pending.len() < BATCH {
                match input.try_recv() {
                    Ok(i) => pending.push(i),
                    Err(_) => break,
                }
            }
            for i in pending {
                match i {
                    Input::Session(e) => self.session_event(e),
                    Input::Ctl { words, reply } => {
                        // Answer with the RIB as of now: flush first.
                        self.flush();
                        let _ = reply.send(self.ctl(&words));
                    }
                    Input::Healthy(h) => self.set_healthy(h),
                    Input::Stop => stopping = true,
                }
            }
            self.timers();
            self.flush();
            if stopping {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for p in &mut self.peers {
            let _ = p.commands.send(Command::Stop);
        }
        for p in &mut self.peers {
            if let Some(t) = p.thread.take() {
                let _ = t.join();
            }
        }
        if let Some(Ok(t)) = accept {
            let _ = t.join();
        }
        // Leave nothing behind in the FIB.
        for p in 0..self.peers.len() {
            self.rib.withdraw_peer(p as PeerId, false, None);
        }
        self.rib.withdraw_peer(SEED, false, None);
        self.flush();
    }

    fn flush(&mut self) {
        let changes = self.rib.take_changes(&self.facts);
        if !changes.is_empty() {
            self.batches += 1;
            self.changes += changes.len() as u64;
            self.sink.apply(changes);
        }
    }

    fn session_event(&mut self, e: Event) {
        match e {
            Event::Up {
                peer,
                open,
                families,
            } => self.peer_up(peer, open, families),
            Event::Update { peer, update } => self.update(peer, update),
            Event::RefreshRequested { peer } => self.send_exports(peer, false),
            Event::Down { peer, graceful } => self.peer_down(peer, graceful),
        }
    }

    fn peer_up(&mut self, id: PeerId, open: Open, families: Vec<Family>) {
        let Some(p) = self.peers.get_mut(id as usize) else {
            return;
        };
        p.facts.router_id = open.router_id;
        self.facts[id as usize] = p.facts;
        if p.stale_until.is_some() {
            // Back from a graceful restart: the stale routes wait for End-of-RIB, at most
            // the stale time.
            p.stale_until = Some(Instant::now() + p.config.stale_time);
        }
        p.open = Some(open);
        p.families = families;
        tracing::info!(peer = %p.config.name, address = %p.config.address, "BGP session established");
        self.send_exports(id, true);
    }

    fn peer_down(&mut self, id: PeerId, graceful: bool) {
        let Some(p) = self.peers.get_mut(id as usize) else {
            return;
        };
        let restart = p
            .open
            .take()
            .and_then(|o| o.graceful_restart)
            .filter(|gr| graceful && p.config.graceful_restart && gr.restart_time > 0);
        // Why, as the session recorded it before it reported the end: the NOTIFICATION
        // sent or received (hold timer expiry is one sent), or the TCP connection's fate.
        let reason = p
            .status
            .lock()
            .ok()
            .and_then(|s| s.last_error.clone())
            .unwrap_or_else(|| "ended".into());
        tracing::info!(
            peer = %p.config.name,
            address = %p.config.address,
            graceful = restart.is_some(),
            %reason,
            "BGP session down"
        );
        match restart {
            Some(gr) => {
                // RFC 4724 §4.2: keep forwarding on the peer's routes, marked stale, for
                // the restart time it announced.
                p.stale_until = Some(Instant::now() + Duration::from_secs(gr.restart_time.into()));
                p.stale_families = p.families.iter().copied().collect();
                self.rib.mark_stale(id);
            }
            None => {
                p.accepted = [0; 2];
                p.stale_until = None;
                p.stale_families.clear();
                self.rib.withdraw_peer(id, false, None);
            }
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        for (id, p) in self.peers.iter_mut().enumerate() {
            if p.stale_until.is_some_and(|t| now >= t) {
                tracing::info!(peer = %p.config.name, "graceful restart timer expired: stale routes removed");
                p.stale_until = None;
                p.stale_families.clear();
                let gone = self.rib.withdraw_peer(id as PeerId, true, None);
                uncount(p, gone);
            }
        }
    }

    fn update(&mut self, id: PeerId, u: Update) {
        let local_as = self.config.local_as;
        let Some(p) = self.peers.get_mut(id as usize) else {
            return;
        };
        if let Some(family) = u.end_of_rib {
            if p.stale_families.remove(&family) {
                let gone = self.rib.withdraw_peer(id, true, Some(family));
                uncount(p, gone);
                if p.stale_families.is_empty() {
                    p.stale_until = None;
                }
            }
            return;
        }
        if let Some(why) = &u.treat_as_withdraw {
            tracing::warn!(peer = %p.config.name, reason = %why, prefixes = u.withdrawn.len(), "UPDATE treated as withdraw (RFC 7606)");
        }
        for net in &u.withdrawn {
            if self.rib.withdraw(*net, id) {
                let slot = usize::from(matches!(net, IpNet::V6(_)));
                p.accepted[slot] = p.accepted[slot].saturating_sub(1);
            }
        }
        if u.announced.is_empty() {
            return;
        }
        let attributes = Arc::new(u.attributes);
        // Loop detection (RFC 4271 §9.1.2), and on eBGP the first AS must be the peer's.
        let looped = attributes.contains_as(local_as);
        let wrong_first = p.facts.ebgp && attributes.first_as() != Some(p.config.remote_as);
        for net in &u.announced {
            let next_hop = attributes.next_hop_for(net);
            let acceptable = !looped
                && !wrong_first
                && p.config.import.accepts(net)
                && p.families.contains(&Family::of(net))
                && next_hop.is_some();
            match (acceptable, next_hop) {
                (true, Some(_)) => {
                    let path = Path {
                        peer: id,
                        attributes: attributes.clone(),
                        stale: false,
                    };
                    if self.rib.announce(*net, path) {
                        p.accepted[usize::from(matches!(net, IpNet::V6(_)))] += 1;
                    }
                }
                _ => {
                    p.filtered += 1;
                    // A refused update for a prefix we had from this peer withdraws it.
                    if self.rib.withdraw(*net, id) {
                        let slot = usize::from(matches!(net, IpNet::V6(_)));
                        p.accepted[slot] = p.accepted[slot].saturating_sub(1);
                    }
                }
            }
        }
        if let Some(max) = p.config.max_prefixes {
            let total = p.accepted[0] + p.accepted[1];
            if total > max {
                tracing::warn!(peer = %p.config.name, max, total, "maximum prefixes exceeded");
                // RFC 4486: AFI, SAFI and the limit as data.
                let family = Family::of(&u.announced[0]);
                let mut data = family.afi().to_be_bytes().to_vec();
                data.push(1);
                data.extend_from_slice(&(max as u32).to_be_bytes());
                let _ = p.commands.send(Command::Close(Notification::new(
                    err::CEASE,
                    err::MAX_PREFIXES,
                    &data,
                )));
            }
        }
    }

    /// Sends our announcements to `peer` (with End-of-RIB after the first time).
    fn send_exports(&self, id: PeerId, with_eor: bool) {
        let Some(p) = self.peers.get(id as usize) else {
            return;
        };
        let nets: Vec<IpNet> = if self.healthy {
            self.config
                .announce
                .iter()
                .filter(|n| p.families.contains(&Family::of(n)))
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let eor = if with_eor {
            p.families.clone()
        } else {
            Vec::new()
        };
        let _ = p.commands.send(Command::Announce(nets, eor));
    }

    fn set_healthy(&mut self, healthy: bool) {
        if healthy == self.healthy {
            return;
        }
        self.healthy = healthy;
        tracing::warn!(
            healthy,
            "dataplane health changed: announcements {}",
            if healthy { "restored" } else { "withdrawn" }
        );
        for (id, p) in self.peers.iter().enumerate() {
            if p.open.is_none() || p.removed {
                continue;
            }
            if healthy {
                self.send_exports(id as PeerId, false);
            } else {
                let _ = p
                    .commands
                    .send(Command::Withdraw(self.config.announce.clone()));
            }
        }
    }

    fn find(&self, key: &str) -> Result<PeerId, String> {
        self.peers
            .iter()
            .position(|p| {
                !p.removed && (p.config.name == key || p.config.address.to_string() == key)
            })
            .map(|i| i as PeerId)
            .ok_or_else(|| format!("no BGP peer {key}"))
    }

    fn ctl(&mut self, words: &[String]) -> Result<Value, String> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["show", "bgp"] | ["show", "bgp", "summary"] => Ok(self.summary()),
            ["show", "bgp", "neighbors"] => Ok(self.neighbors(None)),
            ["show", "bgp", "neighbors", key] => {
                let id = self.find(key)?;
                Ok(self.neighbors(Some(id)))
            }
            ["show", "bgp", "routes", "page", after, filters @ ..] => {
                self.routes_page(after, filters)
            }
            ["show", "bgp", "routes", prefix] => {
                let net: IpNet = prefix
                    .parse()
                    .map_err(|_| format!("{prefix:?} is not a prefix"))?;
                Ok(self.routes(net))
            }
            ["bgp", "neighbor", "reset", key] => {
                let id = self.find(key)?;
                let _ = self.peers[id as usize]
                    .commands
                    .send(Command::Close(Notification::new(
                        err::CEASE,
                        err::ADMIN_RESET,
                        &[],
                    )));
                Ok(json!({"reset": key}))
            }
            ["bgp", "neighbor", "refresh", key] => {
                let id = self.find(key)?;
                let _ = self.peers[id as usize].commands.send(Command::Refresh);
                Ok(json!({"refresh": key}))
            }
            ["bgp", "neighbor", "remove", key] => {
                let id = self.find(key)?;
                let p = &mut self.peers[id as usize];
                p.removed = true;
                if let Ok(mut r) = self.registry.lock() {
                    r.remove(&p.config.address);
                }
                let _ = p.commands.send(Command::Stop);
                if let Some(t) = p.thread.take() {
                    let _ = t.join();
                }
                p.open = None;
                p.accepted = [0; 2];
                self.rib.withdraw_peer(id, false, None);
                Ok(json!({"removed": key}))
            }
            ["bgp", "neighbor", "add", address, "as", asn, rest @ ..] => {
                let address: IpAddr = address
                    .parse()
                    .map_err(|_| format!("{address:?} is not an address"))?;
                let asn: u32 = asn
                    .parse()
                    .map_err(|_| format!("{asn:?} is not an AS number"))?;
                let mut config =
                    PeerConfig::new(&address.to_string(), address, asn, self.config.local_as);
                let mut rest = rest.iter();
                while let Some(word) = rest.next() {
                    match *word {
                        "passive" => config.passive = true,
                        "import" => {
                            config.import = match rest.next().copied() {
                                Some("all") => Import::All,
                                Some("none") => Import::Deny,
                                other => return Err(format!("import all|none, not {other:?}")),
                            }
                        }
                        "port" => {
                            config.port = rest
                                .next()
                                .and_then(|p| p.parse().ok())
                                .ok_or("port needs a number")?
                        }
                        other => return Err(format!("unknown neighbor option {other:?}")),
                    }
                }
                self.add_peer(config)?;
                Ok(json!({"added": address.to_string()}))
            }
            ["bgp", "mrt", "load", file, options @ ..] => {
                let loaded = seed::load(&mut self.rib, file, options)?;
                let answer = loaded.show();
                self.seed = Some(loaded);
                Ok(answer)
            }
            ["bgp", "mrt", "clear"] => {
                self.rib.withdraw_peer(SEED, false, None);
                self.seed = None;
                Ok(json!({"cleared": true}))
            }
            ["bgp", "health", "up"] => {
                self.set_healthy(true);
                Ok(json!({"healthy": true}))
            }
            ["bgp", "health", "down"] => {
                self.set_healthy(false);
                Ok(json!({"healthy": false}))
            }
            _ => Err(format!(
                "unknown BGP request {:?}; try: show bgp summary|neighbors [PEER]|routes [PREFIX], \
                 bgp neighbor add ADDR as ASN [passive] [port N] [import all|none], \
                 bgp neighbor remove|reset|refresh PEER, bgp health up|down, \
                 bgp mrt load FILE [peer INDEX] [next-hop ADDR].., bgp mrt clear",
                w.join(" ")
            )),
        }
    }

    fn summary(&self) -> Value {
        let peers: Vec<Value> = self
            .peers
            .iter()
            .filter(|p| !p.removed)
            .map(|p| {
                let s = p.status.lock().map(|s| s.clone()).unwrap_or_default();
                json!({
                    "name": p.config.name,
                    "address": p.config.address.to_string(),
                    "remote_as": p.config.remote_as,
                    "state": s.state,
                    "for_seconds": s.since.elapsed().as_secs(),
                    "prefixes_ipv4": p.accepted[0],
                    "prefixes_ipv6": p.accepted[1],
                    "messages_in": s.messages_in,
                    "messages_out": s.messages_out,
                    "stale": p.stale_until.is_some(),
                })
            })
            .collect();
        let installed = self.rib.installed();
        json!({
            "router_id": self.config.router_id.to_string(),
            "local_as": self.config.local_as,
            "healthy": self.healthy,
            "prefixes": self.rib.len(),
            "installed_ipv4": installed[0],
            "installed_ipv6": installed[1],
            "fib_batches": self.batches,
            "fib_changes": self.changes,
            "uptime_seconds": self.started.elapsed().as_secs(),
            "mrt": self.seed.as_ref().map(Seed::show),
            "peers": peers,
        })
    }

    fn neighbors(&self, only: Option<PeerId>) -> Value {
        let list: Vec<Value> = self
            .peers
            .iter()
            .enumerate()
            .filter(|(i, p)| !p.removed && only.is_none_or(|o| o as usize == *i))
            .map(|(_, p)| {
                let s = p.status.lock().map(|s| s.clone()).unwrap_or_default();
                json!({
                    "name": p.config.name,
                    "address": p.config.address.to_string(),
                    "remote_as": p.config.remote_as,
                    "type": if p.facts.ebgp { "external" } else { "internal" },
                    "passive": p.config.passive,
                    "state": s.state,
                    "for_seconds": s.since.elapsed().as_secs(),
                    "remote_id": s.remote_id.map(|i| i.to_string()),
                    "local_address": s.local.map(|a| a.to_string()),
                    "hold_time": s.hold_time,
                    "families": p.families.iter().map(|f| f.name()).collect::<Vec<_>>(),
                    "peer_graceful_restart": p.open.as_ref().and_then(|o| o.graceful_restart.as_ref()).map(|g| g.restart_time),
                    "stale": p.stale_until.is_some(),
                    "prefixes_ipv4": p.accepted[0],
                    "prefixes_ipv6": p.accepted[1],
                    "prefixes_filtered": p.filtered,
                    "messages_in": s.messages_in,
                    "messages_out": s.messages_out,
                    "updates_in": s.updates_in,
                    // How long the session had been up when its latest UPDATE was read: for a
                    // session that has taken its table, the time the table took.
                    "established_to_last_update_ms": s
                        .last_update
                        .filter(|_| s.state == "Established")
                        .and_then(|u| u.checked_duration_since(s.since))
                        .map(|d| d.as_millis() as u64),
                    "keepalives_in": s.keepalives_in,
                    "keepalives_out": s.keepalives_out,
                    "notifications_in": s.notifications_in,
                    "notifications_out": s.notifications_out,
                    "treat_as_withdraw": s.treat_as_withdraw,
                    "attributes_discarded": s.attributes_discarded,
                    "established_transitions": s.established_count,
                    "last_error": s.last_error,
                })
            })
            .collect();
        json!({ "neighbors": list })
    }

    /// One page of a `show bgp routes [ipv4|ipv6] [peer P]` listing after prefix `after`
    /// (`-`: from the start): `{"routes": [...], "next": prefix | null}`. The ctl server
    /// asks page after page and streams them, so the RIB is never copied whole.
    fn routes_page(&self, after: &str, filters: &[&str]) -> Result<Value, String> {
        const PAGE: usize = 2048;
        let after: Option<IpNet> = match after {
            "-" => None,
            a => Some(a.parse().map_err(|_| format!("{a:?} is not a prefix"))?),
        };
        let (mut v4, mut v6, mut peer) = (true, true, None);
        let mut words = filters.iter();
        while let Some(&w) = words.next() {
            match w {
                "ipv4" => v6 = false,
                "ipv6" => v4 = false,
                "peer" => {
                    let key = words.next().ok_or("peer needs a name or address")?;
                    peer = Some(self.find(key)?);
                }
                other => return Err(format!("{other:?} is not ipv4, ipv6 or peer P")),
            }
        }
        let admit = |net: &IpNet, paths: &[crate::rib::Path]| {
            let family = match net {
                IpNet::V4(_) => v4,
                IpNet::V6(_) => v6,
            };
            family && peer.is_none_or(|id| paths.iter().any(|p| p.peer == id))
        };
        let (rows, next) = self.rib.page(after, PAGE, &self.facts, admit);
        let routes: Vec<Value> = rows
            .iter()
            .map(|(net, paths)| self.route_json(net, paths))
            .collect();
        Ok(json!({ "routes": routes, "next": next.map(|n| n.to_string()) }))
    }

    fn route_json(&self, net: &IpNet, paths: &[crate::rib::Path]) -> Value {
        let paths: Vec<Value> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| path_json(net, p, i == 0, &self.peers))
            .collect();
        json!({"prefix": net.to_string(), "paths": paths})
    }

    /// `show bgp routes PREFIX`: that prefix's paths, best first.
    fn routes(&self, net: IpNet) -> Value {
        let paths = self.rib.paths(&net, &self.facts);
        let routes: Vec<Value> = (!paths.is_empty())
            .then(|| self.route_json(&net, &paths))
            .into_iter()
            .collect();
        json!({ "routes": routes })
    }
}

fn path_json(net: &IpNet, p: &Path, best: bool, peers: &[Peer]) -> Value {
    let a: &Attributes = &p.attributes;
    let origin = ["igp", "egp", "incomplete"]
        .get(a.origin as usize)
        .copied()
        .unwrap_or("?");
    json!({
        "best": best,
        "peer": match p.peer {
            SEED => Some("mrt".to_string()),
            id => peers.get(id as usize).map(|x| x.config.name.clone()),
        },
        "next_hop": a.next_hop_for(net).map(|h| h.to_string()),
        "as_path": a.as_path_string(),
        "origin": origin,
        "med": a.med,
        "local_pref": a.local_pref,
        "communities": a.communities.iter().map(|c| format!("{}:{}", c >> 16, c & 0xffff)).collect::<Vec<_>>(),
        "stale": p.stale,
    })
}

/// Takes `removed` (IPv4, IPv6) off a peer's accepted counts.
fn uncount(p: &mut Peer, removed: [usize; 2]) {
    for (n, r) in p.accepted.iter_mut().zip(removed) {
        *n = n.saturating_sub(r);
    }
}

/// The session command channel of each peer address, for the listener.
pub type Registry = Arc<Mutex<HashMap<IpAddr, Sender<Command>>>>;

/// Accepts connections and hands each to its peer's session; a connection from an address
/// that is no configured peer is closed at once.
fn listen(listener: TcpListener, registry: Registry, stop: &AtomicBool) {
    let _ = listener.set_nonblocking(true);
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, from)) => {
                let _ = stream.set_nonblocking(false);
                let ip = match from.ip() {
                    IpAddr::V6(a) => a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)),
                    a => a,
                };
                let session = registry.lock().ok().and_then(|r| r.get(&ip).cloned());
                match session {
                    Some(tx) => {
                        let _ = tx.send(Command::Incoming(stream));
                    }
                    None => {
                        tracing::warn!(from = %from, "BGP connection from an unknown peer refused")
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
