//! The control plane: the one thread that writes the RIB/FIB and the adjacency table and
//! owns the neighbour cache. Workers never wait for it: they hand it packets that need a
//! neighbour resolved and neighbours they learned, over a bounded channel, and it answers
//! the `tern ctl` requests.
//!
//! The rooms: `routes.rs` programs the RIB and FIB (static routes, fed routes and their
//! next-hop groups, tunnel adjacencies); `neighbors.rs` runs the neighbour state machine
//! and sends ARP/NDP; `show.rs` answers `tern ctl`. The messages the workers, the BGP
//! speaker and the ctl server send are `crate::control_msg`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use lpm::rib::{Rib, Source, Via};
use lpm::{Fib, NextHopTable, Qsbr, V4, V6};

use crate::adjacency::{self, Adjacency};
use crate::buf::Pool;
use crate::config::{Config, StaticRoute};
use crate::control_msg::ControlMsg;
use crate::counters::WorkerCounters;
use crate::io::PortTx;
use crate::pipeline::PortInfo;

mod neighbors;
mod routes;
mod show;

use neighbors::{ControlStats, Neighbor};
pub use neighbors::{HOLD, TRIES};
use routes::NextHopGroup;

const TICK: Duration = Duration::from_millis(100);

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
    pub nat: Option<crate::nat_mailbox::NatControl>,
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
            let v4 = port.v4.iter().map(|&n| IpNet::V4(n));
            for net in v4.chain(port.v6.iter().map(|&n| IpNet::V6(n))) {
                // The subnet, the address itself, and (IPv4 but /31 and /32) its broadcast.
                c.add(net.trunc(), Source::Connected, glean)?;
                c.add(IpNet::from(net.addr()), Source::Local, adjacency::LOCAL)?;
                if let IpNet::V4(n) = net {
                    if n.prefix_len() < 31 {
                        let broadcast = IpNet::V4(Ipv4Net::from(n.broadcast()));
                        c.add(broadcast, Source::Local, adjacency::BROADCAST)?;
                    }
                }
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
