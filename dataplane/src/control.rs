//! The control plane: the one thread that writes the RIB/FIB and the adjacency table and
//! owns the neighbour cache. Workers never wait for it: they hand it packets that need a
//! neighbour resolved and neighbours they learned, over a bounded channel, and it answers
//! the `tern ctl` requests.
//!
//! Neighbour life cycle (ARP for IPv4, NDP for IPv6):
//! * `Incomplete`: a request went out; up to [`HOLD`] packets wait; retried every second,
//!   [`TRIES`] times, then the held packets get ICMP host unreachable and the entry goes.
//! * `Reachable`: the adjacency carries the MAC. After `neighbor_timeout` without being
//!   heard from, a probe goes out and the entry is `Incomplete` again (the adjacency keeps
//!   the old MAC meanwhile, so traffic is not interrupted), and removed if nobody answers.
//! * `Static`: from the configuration, never aged.
//!
//! A neighbour on a connected network gets a host route (/32, /128) to its own adjacency,
//! so after the first packet the workers never punt to resolve it again.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use lpm::rib::{Rib, Route, Source, Via};
use lpm::{Fib, NextHopTable, Qsbr, V4, V6};
use serde_json::{json, Value};

use crate::adjacency::{self, Adjacency};
use crate::buf::Pool;
use crate::config::{format_mac, Config, StaticRoute};
use crate::counters::{self, WorkerCounters};
use crate::io::PortTx;
use crate::listing;
use crate::pipeline::{icmp, PortInfo};
use crate::wire::{self, arp, eth, icmp4, icmp6, ipv4, ipv6, Mac, BROADCAST};

/// Packets held per unresolved neighbour.
pub const HOLD: usize = 3;
/// Resolution attempts before giving up.
pub const TRIES: u32 = 3;
const RETRY: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(100);

pub enum ControlMsg {
    /// A routed packet (TTL already decremented, source MAC set) waiting for `ip`'s MAC.
    Resolve {
        port: u16,
        ip: IpAddr,
        frame: Vec<u8>,
    },
    /// A neighbour heard from (ARP, NDP).
    Learned {
        port: u16,
        ip: IpAddr,
        mac: Mac,
    },
    /// A batch of route changes from BGP or from zebra.
    Routes(Feed, Vec<bgp_glue::Change>),
    /// A `tern ctl` request; the words after `tern ctl`.
    Ctl {
        words: Vec<String>,
        reply: Sender<Result<Value, String>>,
    },
    /// One page of a route listing (listing.rs).
    RoutePage {
        query: crate::listing::RouteQuery,
        cursor: crate::listing::Cursor,
        reply: Sender<crate::listing::Page>,
    },
    Stop,
}

#[derive(Debug)]
enum State {
    Incomplete {
        tries: u32,
        next_try: Instant,
        held: VecDeque<Vec<u8>>,
    },
    Reachable {
        mac: Mac,
        heard: Instant,
    },
    Static {
        mac: Mac,
    },
}

#[derive(Debug)]
struct Neighbor {
    port: u16,
    adjacency: u32,
    state: State,
    /// Whether a host route points at it (neighbours on connected networks).
    host_route: bool,
    /// Routes (static) that use it as gateway: it stays while they exist.
    gateway_of: usize,
}

pub struct Control {
    ports: Arc<[PortInfo]>,
    tx: Vec<Arc<dyn PortTx>>,
    rib4: Rib<V4>,
    rib6: Rib<V6>,
    adjacencies: NextHopTable<Adjacency>,
    free_adjacencies: Vec<u32>,
    next_adjacency: u32,
    glean: Vec<u32>,
    neighbors: HashMap<IpAddr, Neighbor>,
    statics: std::collections::BTreeMap<IpNet, StaticRoute>,
    tunnels: Arc<tunnels::TunnelTable>,
    /// The adjacency of each tunnel, by tunnel index.
    tunnel_adjacency: Vec<u32>,
    counters: Vec<Arc<WorkerCounters>>,
    neighbor_timeout: Duration,
    pool: Pool,
    stats: ControlStats,
    /// The NAT rules and the workers' shard mailboxes, when NAT is configured.
    pub nat: Option<crate::conntrack::NatControl>,
    /// The next-hop groups fed routes (BGP, zebra) share, keyed by their (normalised)
    /// next-hop set, and the set again by what a route in the RIB points at. Nothing is
    /// kept per prefix here: the RIB's own route for the prefix says which group it holds a
    /// share of.
    bgp_groups: HashMap<Arc<[IpAddr]>, NextHopGroup>,
    bgp_group_of: HashMap<Via<IpAddr>, Arc<[IpAddr]>>,
    /// Fed route changes since memory was last trimmed.
    routes_since_trim: usize,
}

/// Fed route changes after which an idle control plane trims the heap.
const TRIM_AFTER: usize = 50_000;

/// Where a batch of route changes comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    Bgp,
    /// zebra over FPM: FRR chose the routes, tern installs them.
    Fpm,
}

impl Feed {
    /// The RIB source a change goes in as, and the feed's other source the prefix leaves
    /// (an eBGP route replacing an iBGP one).
    fn sources(self, ebgp: bool) -> (Source, Option<Source>) {
        match (self, ebgp) {
            (Feed::Bgp, true) => (Source::Ebgp, Some(Source::Ibgp)),
            (Feed::Bgp, false) => (Source::Ibgp, Some(Source::Ebgp)),
            (Feed::Fpm, _) => (Source::Fpm, None),
        }
    }
}

/// What offering a route to the RIB did: where the routes it replaced (same source) and
/// evicted (the other BGP source) pointed, and whether the FIB took it (the RIB holds the
/// route either way).
struct Offered {
    replaced: Option<Via<IpAddr>>,
    evicted: Option<Via<IpAddr>>,
    installed: Result<(), String>,
}

impl Offered {
    fn of<A>(added: lpm::rib::Added<A>, widen: impl Fn(A) -> IpAddr + Copy) -> Offered {
        Offered {
            replaced: added.replaced.map(|r| r.via.map(widen)),
            evicted: added.evicted.map(|r| r.via.map(widen)),
            installed: added.installed.map_err(|e| e.to_string()),
        }
    }
}

/// The adjacency fed routes with the same next hops share: a neighbour's own adjacency for
/// one on-link next hop, an ECMP adjacency for several, none for a next hop resolved
/// recursively through the FIB. `users` counts the routes in the RIB that point at it.
struct NextHopGroup {
    via: GroupVia,
    users: usize,
}

#[derive(Clone, Copy)]
enum GroupVia {
    /// A neighbour's adjacency (not owned by the group).
    Neighbor(u32),
    /// An ECMP adjacency the group owns.
    Ecmp(u32),
    Recursive(IpAddr),
}

impl GroupVia {
    fn route_via(self) -> Via<IpAddr> {
        match self {
            GroupVia::Neighbor(a) | GroupVia::Ecmp(a) => Via::NextHop(a),
            GroupVia::Recursive(gw) => Via::Recursive(gw),
        }
    }
}

#[derive(Debug, Default)]
struct ControlStats {
    arp_requests: u64,
    ns_sent: u64,
    resolved: u64,
    failed: u64,
    held_dropped: u64,
    held_sent: u64,
}

impl Control {
    /// Builds the tables from the configuration: local addresses, connected networks,
    /// static neighbours and routes.
    pub fn new(
        config: &Config,
        ports: Arc<[PortInfo]>,
        tx: Vec<Arc<dyn PortTx>>,
        qsbr: Arc<Qsbr>,
        counters: Vec<Arc<WorkerCounters>>,
    ) -> Result<Control, String> {
        let fib4 = Fib::<V4>::new(qsbr.clone()).map_err(|e| e.to_string())?;
        let fib6 = Fib::<V6>::new(qsbr.clone()).map_err(|e| e.to_string())?;
        let tunnels = Arc::new(tunnels::TunnelTable::new(config.tunnels.clone())?);
        let mut adjacencies = NextHopTable::new(qsbr, adjacency::CAPACITY);
        adjacencies.set(adjacency::LOCAL, Adjacency::Local);
        adjacencies.set(adjacency::BROADCAST, Adjacency::Broadcast);
        let mut c = Control {
            ports: ports.clone(),
            tx,
            rib4: Rib::new(fib4),
            rib6: Rib::new(fib6),
            adjacencies,
            free_adjacencies: Vec::new(),
            next_adjacency: adjacency::FIRST_DYNAMIC,
            glean: Vec::new(),
            neighbors: HashMap::new(),
            statics: Default::default(),
            tunnels: tunnels.clone(),
            tunnel_adjacency: Vec::new(),
            counters,
            neighbor_timeout: config.neighbor_timeout,
            pool: Pool::new(64),
            stats: ControlStats::default(),
            nat: None,
            bgp_groups: HashMap::new(),
            bgp_group_of: HashMap::new(),
            routes_since_trim: 0,
        };
        for (index, port) in ports.iter().enumerate() {
            let glean = c.allocate(Adjacency::Glean { port: index as u16 })?;
            c.glean.push(glean);
            for net in &port.v4 {
                c.add(IpNet::V4(net.trunc()), Source::Connected, glean)?;
                c.add(
                    IpNet::V4(Ipv4Net::from(net.addr())),
                    Source::Local,
                    adjacency::LOCAL,
                )?;
                if net.prefix_len() < 31 {
                    c.add(
                        IpNet::V4(Ipv4Net::from(net.broadcast())),
                        Source::Local,
                        adjacency::BROADCAST,
                    )?;
                }
            }
            for net in &port.v6 {
                c.add(IpNet::V6(net.trunc()), Source::Connected, glean)?;
                c.add(
                    IpNet::V6(Ipv6Net::from(net.addr())),
                    Source::Local,
                    adjacency::LOCAL,
                )?;
            }
            c.add(
                IpNet::V6(Ipv6Net::from(port.link_local)),
                Source::Local,
                adjacency::LOCAL,
            )?;
        }
        for index in 0..tunnels.len() as u16 {
            let adjacency = c.allocate(Adjacency::Tunnel {
                tunnel: index,
                via: lpm::NO_ROUTE,
            })?;
            c.tunnel_adjacency.push(adjacency);
        }
        for n in &config.neighbors {
            c.set_static_neighbor(n.interface as u16, n.address, n.mac)?;
        }
        for r in &config.routes {
            c.add_static(r.clone())?;
        }
        Ok(c)
    }

    /// Announces our addresses (gratuitous ARP, unsolicited NA), then serves messages
    /// until `Stop` or until every sender is gone.
    pub fn run(mut self, rx: Receiver<ControlMsg>) {
        self.announce();
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(ControlMsg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => self.trim_after_bulk(),
            }
            if Instant::now() >= next_tick {
                self.tick(Instant::now());
                next_tick = Instant::now() + TICK;
            }
        }
    }

    /// Once a bulk of route changes is over (the queue went quiet), hands the memory its
    /// messages and replaced entries left free back to the kernel: a full table passes
    /// through several hundred MB of short-lived allocations that glibc would otherwise
    /// keep.
    fn trim_after_bulk(&mut self) {
        if self.routes_since_trim < TRIM_AFTER {
            return;
        }
        self.routes_since_trim = 0;
        // SAFETY: malloc_trim only releases free heap pages; no pointer is invalidated.
        unsafe { libc::malloc_trim(0) };
    }

    pub fn handle(&mut self, msg: ControlMsg) {
        match msg {
            ControlMsg::Resolve { port, ip, frame } => self.resolve(port, ip, frame),
            ControlMsg::Learned { port, ip, mac } => self.learned(port, ip, mac),
            ControlMsg::Routes(feed, mut changes) => {
                self.routes_since_trim += changes.len();
                // In prefix order (stable: a prefix named twice keeps its order), the RIB's
                // and the FIB's writes walk their tables forward instead of at random: at a
                // full table most of a random write's time is cache misses.
                changes.sort_by_key(bgp_glue::Change::prefix);
                for change in changes {
                    if let Err(e) = self.apply_fed(feed, change) {
                        tracing::warn!(?feed, "route not installed: {e}");
                    }
                }
                self.restack_tunnels();
            }
            ControlMsg::Ctl { words, reply } => {
                let _ = reply.send(self.ctl(&words));
            }
            ControlMsg::RoutePage {
                query,
                cursor,
                reply,
            } => {
                let _ = reply.send(self.route_page(&query, cursor));
            }
            ControlMsg::Stop => {}
        }
    }

    fn allocate(&mut self, adj: Adjacency) -> Result<u32, String> {
        let index = match self.free_adjacencies.pop() {
            Some(i) => i,
            None if self.next_adjacency < adjacency::CAPACITY => {
                self.next_adjacency += 1;
                self.next_adjacency - 1
            }
            None => return Err("adjacency table full".into()),
        };
        self.adjacencies.set(index, adj);
        Ok(index)
    }

    fn release(&mut self, index: u32) {
        self.adjacencies.clear(index);
        self.free_adjacencies.push(index);
    }

    /// Offers a route to the RIB and, through it, the FIB, withdrawing `evict`'s route for
    /// the prefix in the same step (see [`Offered`]). A next hop of the wrong family is
    /// refused before the RIB sees it. The tunnel adjacencies are not re-stacked here:
    /// [`Control::add`] does it per route, a BGP batch once at its end.
    fn offer(
        &mut self,
        net: IpNet,
        source: Source,
        via: Via<IpAddr>,
        evict: Option<Source>,
    ) -> Result<Offered, String> {
        let distance = source.default_distance();
        let other_family = || format!("{net}: a next hop of the other family does not resolve");
        let added = match net {
            IpNet::V4(n) => {
                let via = match via {
                    Via::NextHop(a) => Via::NextHop(a),
                    Via::Recursive(IpAddr::V4(g)) => Via::Recursive(g),
                    Via::Recursive(IpAddr::V6(_)) => return Err(other_family()),
                };
                let route = Route {
                    source,
                    distance,
                    via,
                };
                Offered::of(self.rib4.add(n, route, evict), IpAddr::V4)
            }
            IpNet::V6(n) => {
                let via = match via {
                    Via::NextHop(a) => Via::NextHop(a),
                    Via::Recursive(IpAddr::V6(g)) => Via::Recursive(g),
                    Via::Recursive(IpAddr::V4(_)) => return Err(other_family()),
                };
                let route = Route {
                    source,
                    distance,
                    via,
                };
                Offered::of(self.rib6.add(n, route, evict), IpAddr::V6)
            }
        };
        Ok(added)
    }

    /// Withdraws `source`'s route for `net` (tunnels not re-stacked, as for `offer`);
    /// returns where it pointed, if there was one.
    fn withdraw(&mut self, net: IpNet, source: Source) -> Result<Option<Via<IpAddr>>, String> {
        let result = match net {
            IpNet::V4(n) => self
                .rib4
                .remove(n, source)
                .map(|r| r.map(|r| r.via.map(IpAddr::V4))),
            IpNet::V6(n) => self
                .rib6
                .remove(n, source)
                .map(|r| r.map(|r| r.via.map(IpAddr::V6))),
        };
        result.map_err(|e| e.to_string())
    }

    fn add(&mut self, net: IpNet, source: Source, adjacency: u32) -> Result<(), String> {
        self.offer(net, source, Via::NextHop(adjacency), None)?
            .installed?;
        self.restack_tunnels();
        Ok(())
    }

    fn remove(&mut self, net: IpNet, source: Source) -> Result<bool, String> {
        let removed = self.withdraw(net, source)?;
        self.restack_tunnels();
        Ok(removed.is_some())
    }

    /// Stacks every tunnel adjacency on the current FIB next hop of its remote. Runs after
    /// every route change: one lookup per tunnel, and a write only where the answer moved.
    fn restack_tunnels(&mut self) {
        for (t, &adjacency) in self.tunnel_adjacency.iter().enumerate() {
            let Some(tunnel) = self.tunnels.get(t as u16) else {
                continue;
            };
            let via = match tunnel.spec.remote {
                IpAddr::V4(a) => self.rib4.fib().lookup(a),
                IpAddr::V6(a) => self.rib6.fib().lookup(a),
            }
            .unwrap_or(lpm::NO_ROUTE);
            let stacked = Adjacency::Tunnel {
                tunnel: t as u16,
                via,
            };
            if self.adjacencies.get(adjacency) != Some(&stacked) {
                self.adjacencies.set(adjacency, stacked);
            }
        }
    }

    /// The port whose connected network holds `ip`.
    fn port_for(&self, ip: IpAddr) -> Option<u16> {
        self.ports
            .iter()
            .position(|p| match ip {
                IpAddr::V4(a) => p.v4.iter().any(|n| n.contains(&a)),
                IpAddr::V6(a) => p.v6.iter().any(|n| n.contains(&a)) || (a.is_unicast_link_local()),
            })
            .map(|p| p as u16)
    }

    /// The neighbour entry for `ip` on `port`, created `Incomplete` if new.
    fn neighbor(&mut self, port: u16, ip: IpAddr) -> Result<&mut Neighbor, String> {
        if !self.neighbors.contains_key(&ip) {
            let adjacency = self.allocate(Adjacency::Incomplete { port, ip })?;
            let state = State::Incomplete {
                tries: 0,
                next_try: Instant::now(),
                held: VecDeque::new(),
            };
            self.neighbors.insert(
                ip,
                Neighbor {
                    port,
                    adjacency,
                    state,
                    host_route: false,
                    gateway_of: 0,
                },
            );
        }
        self.neighbors
            .get_mut(&ip)
            .ok_or_else(|| "neighbour vanished".to_string())
    }

    fn set_static_neighbor(&mut self, port: u16, ip: IpAddr, mac: Mac) -> Result<(), String> {
        let n = self.neighbor(port, ip)?;
        n.state = State::Static { mac };
        let adjacency = n.adjacency;
        self.adjacencies
            .set(adjacency, Adjacency::Neighbor { port, ip, mac });
        self.ensure_host_route(ip)
    }

    fn ensure_host_route(&mut self, ip: IpAddr) -> Result<(), String> {
        let Some(n) = self.neighbors.get_mut(&ip) else {
            return Ok(());
        };
        if n.host_route {
            return Ok(());
        }
        n.host_route = true;
        let adjacency = n.adjacency;
        self.add(IpNet::from(ip), Source::Neighbor, adjacency)
    }

    /// Installs a static route (as `[[route]]` in the config or `tern ctl route add`).
    pub fn add_static(&mut self, route: StaticRoute) -> Result<(), String> {
        let adjacency = match (route.via, route.interface) {
            _ if route.tunnel.is_some() => route
                .tunnel
                .and_then(|t| self.tunnel_adjacency.get(t).copied())
                .ok_or("no such tunnel")?,
            (Some(gw), _) => {
                let port = route
                    .interface
                    .map(|p| p as u16)
                    .or_else(|| self.port_for(gw))
                    .ok_or_else(|| format!("gateway {gw} is not on a connected network"))?;
                let n = self.neighbor(port, gw)?;
                n.gateway_of += 1;
                let adjacency = n.adjacency;
                self.ensure_host_route(gw)?;
                adjacency
            }
            (None, Some(port)) => self.glean.get(port).copied().ok_or("no such interface")?,
            (None, None) => return Err("a route needs a gateway or an interface".into()),
        };
        self.add(route.prefix, Source::Static, adjacency)?;
        // A replaced route no longer holds its old gateway.
        if let Some(gw) = self
            .statics
            .insert(route.prefix, route)
            .and_then(|old| old.via)
        {
            if let Some(n) = self.neighbors.get_mut(&gw) {
                n.gateway_of = n.gateway_of.saturating_sub(1);
            }
        }
        Ok(())
    }

    /// Installs, replaces or removes one route from a feed (the caller re-stacks the
    /// tunnels once per batch). A `Set` that repeats what the RIB has is a lookup and no
    /// write.
    fn apply_fed(&mut self, feed: Feed, change: bgp_glue::Change) -> Result<(), String> {
        match change {
            bgp_glue::Change::Set {
                prefix,
                next_hops,
                ebgp,
            } => {
                let (source, other) = feed.sources(ebgp);
                let via = self.join_group(&next_hops)?;
                // Each fed route in the RIB holds one share of its group: give back the one
                // it no longer holds (the old group, or the new one if the RIB refused it).
                let offered = match self.offer(prefix, source, via, other) {
                    Ok(offered) => offered,
                    Err(refused) => {
                        self.leave_group(via);
                        return Err(refused);
                    }
                };
                // The replaced route's share, and the evicted other source's.
                for v in [offered.replaced, offered.evicted].into_iter().flatten() {
                    self.leave_group(v);
                }
                offered.installed
            }
            bgp_glue::Change::Remove { prefix } => {
                let (source, other) = feed.sources(true);
                self.drop_fed_route(prefix, source)?;
                match other {
                    Some(other) => self.drop_fed_route(prefix, other),
                    None => Ok(()),
                }
            }
        }
    }

    fn drop_fed_route(&mut self, prefix: IpNet, source: Source) -> Result<(), String> {
        if let Some(via) = self.withdraw(prefix, source)? {
            self.leave_group(via);
        }
        Ok(())
    }

    /// A share of the group for a next-hop set, the group created on first use. The set is
    /// normalised to what forwarding uses (its on-link next hops, else its first one, which
    /// resolves recursively), so that one group never has two sets and the via a route
    /// holds names its group.
    fn join_group(&mut self, hops: &[IpAddr]) -> Result<Via<IpAddr>, String> {
        // On the stack: a full feed joins a group per route, nearly always of one hop.
        let mut key: smallvec::SmallVec<[IpAddr; 4]> = hops
            .iter()
            .copied()
            .filter(|gw| self.port_for(*gw).is_some())
            .collect();
        if key.is_empty() {
            key.extend(hops.first().copied());
        }
        if let Some(g) = self.bgp_groups.get_mut(key.as_slice()) {
            g.users += 1;
            return Ok(g.via.route_via());
        }
        let mut members = Vec::with_capacity(key.len());
        for &gw in &key {
            if let Some(port) = self.port_for(gw) {
                let n = self.neighbor(port, gw)?;
                n.gateway_of += 1;
                let adjacency = n.adjacency;
                self.ensure_host_route(gw)?;
                members.push(adjacency);
            }
        }
        let via = match (members.as_slice(), key.first()) {
            ([one], _) => GroupVia::Neighbor(*one),
            ([], Some(gw)) => GroupVia::Recursive(*gw),
            ([], None) => return Err("a BGP route without next hop".into()),
            (many, _) => GroupVia::Ecmp(self.allocate(Adjacency::Ecmp(many.to_vec()))?),
        };
        let key: Arc<[IpAddr]> = key.as_slice().into();
        self.bgp_group_of.insert(via.route_via(), key.clone());
        self.bgp_groups.insert(key, NextHopGroup { via, users: 1 });
        Ok(via.route_via())
    }

    /// Gives back one share of the group a BGP route pointed at; the last one frees it.
    fn leave_group(&mut self, via: Via<IpAddr>) {
        let Some(key) = self.bgp_group_of.get(&via).cloned() else {
            return;
        };
        let Some(g) = self.bgp_groups.get_mut(&key) else {
            return;
        };
        g.users -= 1;
        if g.users > 0 {
            return;
        }
        let group = g.via;
        self.bgp_groups.remove(&key);
        self.bgp_group_of.remove(&via);
        match group {
            GroupVia::Recursive(_) => return,
            GroupVia::Ecmp(a) => self.release(a),
            GroupVia::Neighbor(_) => {}
        }
        for gw in key.iter() {
            if let Some(n) = self.neighbors.get_mut(gw) {
                n.gateway_of = n.gateway_of.saturating_sub(1);
            }
        }
    }

    fn remove_static(&mut self, prefix: IpNet) -> Result<bool, String> {
        let Some(route) = self.statics.remove(&prefix) else {
            return Ok(false);
        };
        self.remove(prefix, Source::Static)?;
        if let Some(n) = route.via.and_then(|gw| self.neighbors.get_mut(&gw)) {
            n.gateway_of = n.gateway_of.saturating_sub(1);
        }
        Ok(true)
    }

    fn resolve(&mut self, port: u16, ip: IpAddr, frame: Vec<u8>) {
        let Ok(n) = self.neighbor(port, ip) else {
            return;
        };
        let mut overflow = false;
        let request = match &mut n.state {
            State::Reachable { mac, .. } | State::Static { mac } => {
                // Resolved while the packet was on its way here.
                let mac = *mac;
                self.send_held(port, mac, frame);
                return;
            }
            State::Incomplete { tries, held, .. } => {
                if held.len() < HOLD {
                    held.push_back(frame);
                } else {
                    overflow = true;
                }
                *tries == 0
            }
        };
        if overflow {
            self.stats.held_dropped += 1;
        }
        // A glean'd destination on a connected network gets its own host route right away,
        // so further packets come here with the neighbour named, not as new gleans.
        if self.port_for(ip).is_some() {
            let _ = self.ensure_host_route(ip);
        }
        if request {
            self.solicit(ip, None);
            if let Some(State::Incomplete {
                tries, next_try, ..
            }) = self.neighbors.get_mut(&ip).map(|n| &mut n.state)
            {
                *tries = 1;
                *next_try = Instant::now() + RETRY;
            }
        }
    }

    fn learned(&mut self, port: u16, ip: IpAddr, mac: Mac) {
        let now = Instant::now();
        let held = match self.neighbors.get_mut(&ip) {
            Some(n) => match &mut n.state {
                State::Static { .. } => return,
                State::Reachable { mac: old, heard } => {
                    *heard = now;
                    if *old == mac {
                        return;
                    }
                    *old = mac;
                    VecDeque::new()
                }
                State::Incomplete { held, .. } => {
                    let held = std::mem::take(held);
                    n.state = State::Reachable { mac, heard: now };
                    self.stats.resolved += 1;
                    held
                }
            },
            None => {
                // Learn from a request to us or an unsolicited answer: the host is talking to us.
                let Ok(n) = self.neighbor(port, ip) else {
                    return;
                };
                n.state = State::Reachable { mac, heard: now };
                let _ = self.ensure_host_route(ip);
                VecDeque::new()
            }
        };
        let Some(n) = self.neighbors.get(&ip) else {
            return;
        };
        let (adjacency, port) = (n.adjacency, n.port);
        self.adjacencies
            .set(adjacency, Adjacency::Neighbor { port, ip, mac });
        for frame in held {
            self.send_held(port, mac, frame);
        }
    }

    fn send_held(&mut self, port: u16, mac: Mac, mut frame: Vec<u8>) {
        if frame.len() < eth::LEN {
            return;
        }
        frame[0..6].copy_from_slice(&mac);
        if let Some(tx) = self.tx.get(port as usize) {
            if tx.send(&frame).is_ok() {
                self.stats.held_sent += 1;
            }
        }
    }

    /// Retries, gives up, ages.
    pub fn tick(&mut self, now: Instant) {
        let mut retry = Vec::new();
        let mut failed = Vec::new();
        let mut probe = Vec::new();
        for (ip, n) in &self.neighbors {
            match &n.state {
                State::Incomplete {
                    tries, next_try, ..
                } if *tries > 0 && *next_try <= now => {
                    if *tries >= TRIES {
                        failed.push(*ip);
                    } else {
                        retry.push(*ip);
                    }
                }
                State::Reachable { heard, mac }
                    if now.duration_since(*heard) >= self.neighbor_timeout =>
                {
                    probe.push((*ip, *mac))
                }
                _ => {}
            }
        }
        for ip in retry {
            self.solicit(ip, None);
            if let Some(State::Incomplete {
                tries, next_try, ..
            }) = self.neighbors.get_mut(&ip).map(|n| &mut n.state)
            {
                *tries += 1;
                *next_try = now + RETRY;
            }
        }
        for (ip, mac) in probe {
            // Unicast probe to the MAC we have; the adjacency keeps it meanwhile.
            self.solicit(ip, Some(mac));
            if let Some(n) = self.neighbors.get_mut(&ip) {
                n.state = State::Incomplete {
                    tries: 1,
                    next_try: now + RETRY,
                    held: VecDeque::new(),
                };
            }
        }
        for ip in failed {
            self.give_up(ip);
        }
    }

    /// Resolution failed: ICMP host unreachable for what was held; the entry goes (or, if
    /// routes use it as their gateway, stays incomplete for the next packet to retry).
    fn give_up(&mut self, ip: IpAddr) {
        self.stats.failed += 1;
        let Some(n) = self.neighbors.get_mut(&ip) else {
            return;
        };
        let held = match &mut n.state {
            State::Incomplete { held, .. } => std::mem::take(held),
            _ => VecDeque::new(),
        };
        let (port, adjacency, gateway, host_route) =
            (n.port, n.adjacency, n.gateway_of > 0, n.host_route);
        for frame in held {
            self.host_unreachable(port, &frame);
        }
        if gateway {
            self.adjacencies
                .set(adjacency, Adjacency::Incomplete { port, ip });
            if let Some(n) = self.neighbors.get_mut(&ip) {
                n.state = State::Incomplete {
                    tries: 0,
                    next_try: Instant::now(),
                    held: VecDeque::new(),
                };
            }
            return;
        }
        if host_route {
            let _ = self.remove(IpNet::from(ip), Source::Neighbor);
        }
        self.neighbors.remove(&ip);
        self.release(adjacency);
    }

    /// ICMP host unreachable (address unreachable for IPv6) about a held frame, sent to its
    /// source through the FIB.
    fn host_unreachable(&mut self, port: u16, frame: &[u8]) {
        if frame.len() < eth::LEN + 20 {
            return;
        }
        let ip = &frame[eth::LEN..];
        let v4 = eth::ethertype(frame) == eth::TYPE_IPV4;
        // The source side: the port whose network routes back to the sender.
        let reply = if v4 {
            if !icmp::may_answer_v4(ip) {
                return;
            }
            let back = self.rib4.fib().lookup(ipv4::src(ip));
            let src = self
                .port_of_adjacency(back)
                .and_then(|p| self.ports[p as usize].v4_source())
                .or_else(|| self.ports[port as usize].v4_source());
            src.and_then(|src| {
                icmp::error_v4(
                    &mut self.pool,
                    src,
                    ip,
                    icmp4::DEST_UNREACHABLE,
                    icmp4::CODE_HOST_UNREACHABLE,
                    [0; 4],
                )
            })
        } else {
            if !icmp::may_answer_v6(ip) {
                return;
            }
            let back = self.rib6.fib().lookup(ipv6::src(ip));
            let src = self
                .port_of_adjacency(back)
                .map(|p| self.ports[p as usize].v6_source())
                .unwrap_or(self.ports[port as usize].v6_source());
            icmp::error_v6(
                &mut self.pool,
                src,
                ip,
                icmp6::DEST_UNREACHABLE,
                icmp6::CODE_ADDR_UNREACHABLE,
                [0; 4],
            )
        };
        let Some(reply) = reply else { return };
        let bytes = reply.data().to_vec();
        self.pool.free(reply);
        self.send_routed(bytes);
    }

    fn port_of_adjacency(&self, adjacency: Option<u32>) -> Option<u16> {
        match self.adjacencies.get(adjacency?)? {
            Adjacency::Glean { port }
            | Adjacency::Incomplete { port, .. }
            | Adjacency::Neighbor { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// Sends a frame tern built to where the FIB says, if the neighbour is resolved.
    fn send_routed(&mut self, mut frame: Vec<u8>) {
        let ip = &frame[eth::LEN..];
        let adjacency = if eth::ethertype(&frame) == eth::TYPE_IPV4 {
            self.rib4.fib().lookup(ipv4::dst(ip))
        } else {
            self.rib6.fib().lookup(ipv6::dst(ip))
        };
        if let Some(Adjacency::Neighbor { port, mac, .. }) =
            adjacency.and_then(|a| self.adjacencies.get(a)).cloned()
        {
            eth::set_addrs(&mut frame, &mac, &self.ports[port as usize].mac);
            if let Some(tx) = self.tx.get(port as usize) {
                let _ = tx.send(&frame);
            }
        }
    }

    /// Sends an ARP request or an NDP neighbour solicitation for `ip` (unicast to `mac`
    /// when refreshing a known neighbour).
    fn solicit(&mut self, ip: IpAddr, mac: Option<Mac>) {
        let Some(n) = self.neighbors.get(&ip) else {
            return;
        };
        let port = &self.ports[n.port as usize];
        let frame = match ip {
            IpAddr::V4(target) => {
                let Some(src) = port
                    .v4
                    .iter()
                    .find(|net| net.contains(&target))
                    .or(port.v4.first())
                    .map(|n| n.addr())
                else {
                    return;
                };
                self.stats.arp_requests += 1;
                arp_frame(
                    port.mac,
                    mac.unwrap_or(BROADCAST),
                    arp::OP_REQUEST,
                    src,
                    port.mac,
                    target,
                    [0; 6],
                )
            }
            IpAddr::V6(target) => {
                let src = port
                    .v6
                    .iter()
                    .find(|net| net.contains(&target))
                    .map(|n| n.addr())
                    .unwrap_or(port.link_local);
                self.stats.ns_sent += 1;
                ns_frame(port.mac, src, target, mac)
            }
        };
        if let Some(tx) = self.tx.get(n.port as usize) {
            let _ = tx.send(&frame);
        }
    }

    /// Gratuitous ARP and unsolicited neighbour advertisements for every address.
    fn announce(&self) {
        for (index, port) in self.ports.iter().enumerate() {
            let Some(tx) = self.tx.get(index) else {
                continue;
            };
            for net in &port.v4 {
                let a = net.addr();
                let _ = tx.send(&arp_frame(
                    port.mac,
                    BROADCAST,
                    arp::OP_REQUEST,
                    a,
                    port.mac,
                    a,
                    [0; 6],
                ));
            }
            for a in port.v6.iter().map(|n| n.addr()).chain([port.link_local]) {
                let _ = tx.send(&na_frame(port.mac, a));
            }
        }
    }

    fn ctl(&mut self, words: &[String]) -> Result<Value, String> {
        let w: Vec<&str> = words.iter().map(|s| s.as_str()).collect();
        match w.as_slice() {
            ["show", "interfaces"] => Ok(self.show_interfaces()),
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
                let prefix: IpNet = prefix.parse().map_err(|_| format!("{prefix:?} is not a prefix"))?;
                if self.remove_static(prefix)? {
                    Ok(json!({"ok": true}))
                } else {
                    Err(format!("no static route for {prefix}"))
                }
            }
            _ => Err(format!("unknown command {:?}; try: show interfaces|tunnels|routes|route PREFIX|fib|neighbors|counters|conntrack|nat, conntrack delete [proto P] [addr A] [port N], nat backend FRONTEND ADDR:PORT up|down, nat forward add NAME tcp|udp ADDR:PORT BACKEND.., nat forward del NAME, route add PREFIX via ADDR | dev IFNAME|TUNNEL, route del PREFIX", words.join(" "))),
        }
    }

    fn parse_route(&self, prefix: &str, rest: &[&str]) -> Result<StaticRoute, String> {
        let prefix: IpNet = prefix
            .parse()
            .map_err(|_| format!("{prefix:?} is not a prefix"))?;
        if prefix.trunc() != prefix {
            return Err(format!(
                "{prefix} has host bits set (did you mean {}?)",
                prefix.trunc()
            ));
        }
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
    fn interface_count(&self) -> usize {
        self.ports.len() + self.tunnels.len()
    }

    fn show_interfaces(&self) -> Value {
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

    fn show_tunnels(&self) -> Value {
        let totals = counters::sum(&self.counters, self.interface_count());
        Value::Array(self.tunnel_rows(&totals).collect())
    }

    /// One row per tunnel with its counters (the slots after the ports in `totals`).
    fn tunnel_rows<'a>(&'a self, totals: &'a counters::Totals) -> impl Iterator<Item = Value> + 'a {
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

    fn describe(&self, adjacency: Option<u32>) -> Value {
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

    fn route_row<N: std::fmt::Display, A>(&self, r: &lpm::rib::Installed<N, A>) -> Value {
        json!({"prefix": r.net.to_string(), "source": r.route.source.name(), "distance": r.route.distance, "next_hop": self.describe(r.next_hop)})
    }

    /// One page of a route listing: at most `listing::PAGE` prefixes looked at from
    /// `cursor`, the matching rows, and where the next page starts.
    fn route_page(&self, q: &listing::RouteQuery, cursor: listing::Cursor) -> listing::Page {
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
    fn scan<F: lpm::Family>(
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
    fn show_routes(&self, q: &listing::RouteQuery) -> Value {
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
    fn show_route(&self, what: &str) -> Result<Value, String> {
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
    fn fib_summary(&self) -> Value {
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

    fn show_neighbors(&self) -> Value {
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

    fn show_counters(&self) -> Value {
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

#[allow(clippy::too_many_arguments)]
fn arp_frame(
    src_mac: Mac,
    dst_mac: Mac,
    op: u16,
    sender_ip: Ipv4Addr,
    sender_mac: Mac,
    target_ip: Ipv4Addr,
    target_mac: Mac,
) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    eth::write(&mut f, &dst_mac, &src_mac, eth::TYPE_ARP);
    arp::write(
        &mut f[eth::LEN..],
        &arp::Arp {
            op,
            sender_mac,
            sender_ip,
            target_mac,
            target_ip,
        },
    );
    f
}

/// Neighbour solicitation for `target` from `src`, multicast to its solicited-node group
/// (or unicast to `mac` when refreshing), with our source link-layer address option.
fn ns_frame(port_mac: Mac, src: Ipv6Addr, target: Ipv6Addr, mac: Option<Mac>) -> Vec<u8> {
    let (dst, dst_mac) = match mac {
        Some(m) => (target, m),
        None => (
            ipv6::solicited_node(target),
            ipv6::multicast_mac(ipv6::solicited_node(target)),
        ),
    };
    let mut f = vec![0u8; eth::LEN + ipv6::LEN + 32];
    eth::write(&mut f, &dst_mac, &port_mac, eth::TYPE_IPV6);
    ipv6::write(&mut f[eth::LEN..], 32, ipv6::NEXT_ICMP, 255, src, dst);
    let m = &mut f[eth::LEN + ipv6::LEN..];
    m[0] = icmp6::NEIGHBOR_SOLICIT;
    m[8..24].copy_from_slice(&target.octets());
    m[24] = icmp6::OPT_SOURCE_LL;
    m[25] = 1;
    m[26..32].copy_from_slice(&port_mac);
    let c = wire::checksum6(src, dst, ipv6::NEXT_ICMP, m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

/// Unsolicited neighbour advertisement of `addr` to all nodes (Router + Override).
fn na_frame(port_mac: Mac, addr: Ipv6Addr) -> Vec<u8> {
    let all_nodes = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
    let mut f = vec![0u8; eth::LEN + ipv6::LEN + 32];
    eth::write(
        &mut f,
        &ipv6::multicast_mac(all_nodes),
        &port_mac,
        eth::TYPE_IPV6,
    );
    ipv6::write(
        &mut f[eth::LEN..],
        32,
        ipv6::NEXT_ICMP,
        255,
        addr,
        all_nodes,
    );
    let m = &mut f[eth::LEN + ipv6::LEN..];
    m[0] = icmp6::NEIGHBOR_ADVERT;
    m[4] = 0xa0;
    m[8..24].copy_from_slice(&addr.octets());
    m[24] = icmp6::OPT_TARGET_LL;
    m[25] = 1;
    m[26..32].copy_from_slice(&port_mac);
    let c = wire::checksum6(addr, all_nodes, ipv6::NEXT_ICMP, m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    f
}

impl Control {
    /// Readers for the workers.
    /// The tunnel table the workers share.
    pub fn tunnels(&self) -> Arc<tunnels::TunnelTable> {
        self.tunnels.clone()
    }

    pub fn readers(
        &self,
    ) -> (
        lpm::Fib4Reader,
        lpm::Fib6Reader,
        lpm::nexthop::NextHopView<Adjacency>,
    ) {
        (
            self.rib4.fib().reader(),
            self.rib6.fib().reader(),
            self.adjacencies.view(),
        )
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
