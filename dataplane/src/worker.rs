//! A worker: one poll loop on one core, with its own queue on every port, its own frame
//! pool and counters. It reads the FIB and the adjacency table lock-free and reports a
//! quiescent state once per loop iteration; everything that needs shared mutable state
//! (neighbour resolution, learning) goes to the control plane over a bounded channel.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use lpm::nexthop::NextHopView;
use lpm::{Fib4Reader, Fib6Reader, QsbrThread, NO_ROUTE};

use crate::adjacency::Adjacency;
use crate::buf::{Frame, Pool};
use crate::conntrack::NatRequest;
use crate::control_msg::ControlMsg;
use crate::counters::{Drop, Event, Local, WorkerCounters};
use crate::handoff::Handoff;
use crate::idle::Idle;
use crate::io::host::HostInterfaces;
use crate::io::PortQueue;
use crate::pipeline::icmp::{self, Limiter};
use crate::pipeline::local::{self, Outcome};
use crate::pipeline::{
    mtu, nat, parse, rewrite, route, ttl, tunnel, Class, Meta, NatMark, PortInfo,
};
use crate::wire::{eth, icmp4, icmp6, ipv4, ipv6, Mac};

/// Where the adjacency of a packet sends it, copied out of the table so no reference into
/// it outlives the decision.
#[derive(Clone, Copy)]
enum Hop {
    Local,
    Broadcast,
    Send {
        port: u16,
        mac: Mac,
    },
    /// Needs resolution of `ip` (`None`: the packet's own destination, a glean).
    Resolve {
        port: u16,
        ip: Option<IpAddr>,
    },
    /// Into the tunnel with this index, then by the next hop `via`.
    Tunnel {
        tunnel: u16,
        via: u32,
    },
    Missing,
}

/// Where a forwarded packet leaves: a port (with the next hop's MAC, or the address still
/// to resolve), or a tunnel (encapsulate, then route the outer packet).
#[derive(Clone, Copy)]
enum Egress {
    Port {
        port: u16,
        target: Result<Mac, Option<IpAddr>>,
    },
    Tunnel {
        tunnel: u16,
        via: u32,
    },
}

/// Everything a worker is built from.
pub struct WorkerSetup {
    pub id: usize,
    pub core: Option<usize>,
    pub ports: Arc<[PortInfo]>,
    pub queues: Vec<Box<dyn PortQueue>>,
    /// The worker's frames; AF_XDP queues in `queues` share its region as their UMEM.
    pub pool: Pool,
    pub burst: usize,
    pub fib4: Fib4Reader,
    pub fib6: Fib6Reader,
    pub adjacencies: NextHopView<Adjacency>,
    pub tunnels: Arc<tunnels::TunnelTable>,
    pub qsbr: QsbrThread,
    pub counters: Arc<WorkerCounters>,
    pub control: SyncSender<ControlMsg>,
    pub icmp_rate: u32,
    pub icmp_burst: u32,
    /// The NAT stage and the mailbox the control plane reaches its shard through.
    pub nat: Option<(nat::Stage, Receiver<NatRequest>)>,
    /// The kernel's side of the ports, for traffic to tern's addresses it does not serve.
    pub host: Option<Arc<HostInterfaces>>,
    /// This worker's ends of the rings to the other workers (NAT with several workers).
    pub handoff: Option<Handoff>,
}

pub struct Worker {
    ports: Arc<[PortInfo]>,
    queues: Vec<Box<dyn PortQueue>>,
    pool: Pool,
    burst: usize,
    fib4: Fib4Reader,
    fib6: Fib6Reader,
    adjacencies: NextHopView<Adjacency>,
    tunnels: Arc<tunnels::TunnelTable>,
    qsbr: QsbrThread,
    counters: Arc<WorkerCounters>,
    /// Counter slots: one per port, then one per tunnel.
    stats: Local,
    control: SyncSender<ControlMsg>,
    icmp: Limiter,
    rx: Vec<Frame>,
    /// Frames taken from the hand-off, before they run (`receive_handed`).
    handed: Vec<Frame>,
    meta: Vec<Meta>,
    tx: Vec<Vec<Frame>>,
    fragments: Vec<Frame>,
    nat: Option<nat::Stage>,
    nat_requests: Option<Receiver<NatRequest>>,
    host: Option<Arc<HostInterfaces>>,
    handoff: Option<Handoff>,
    /// Polls so far (wrapping), to space out the idle chores.
    polls: u32,
    /// What the worker sleeps on: one entry per queue that has a descriptor.
    poll_fds: Vec<libc::pollfd>,
    route_scratch: route::Scratch,
    /// The last next hop of the current burst whose hop is the same for every packet (all
    /// but ECMP), with that hop: a burst's packets mostly share a few next hops, and those
    /// skip the adjacency table. Reset per burst, so a changed adjacency is seen by the
    /// next burst, as a FIB change is.
    burst_hop: Option<(u32, Hop)>,
    /// The same for the underlay next hop of tunnels (which alternates with the route's on
    /// every encapsulated packet), kept only for a resolved neighbour and with everything
    /// the outer frame needs from it.
    burst_underlay: Option<Underlay>,
    /// Set while tern sends frames of its own (ICMP errors, echo replies, fragments after
    /// the first, released NAT holds): their fate is not a received frame's outcome, so
    /// their drops count in the `originated` row and nothing counts as forwarded.
    originating: bool,
    /// Frames of tern's own counted as `forwarded` events: a burst's received frames that
    /// went on are its `forwarded` events less these (see `run_burst`), so the per-port
    /// count costs the forwarding path one add.
    originated_forwarded: u64,
}

/// A tunnel's underlay next hop resolved to a neighbour on a port: its Ethernet addresses
/// and the port's MTU, all an outer packet needs to leave.
#[derive(Clone, Copy)]
struct Underlay {
    via: u32,
    port: u16,
    mtu: u16,
    /// Destination and source MAC, as the Ethernet header has them.
    macs: [u8; 12],
}

/// Empty polls between the chores an idle worker still does (see `poll_once`).
const IDLE_CHORES: u32 = 64;
/// Polls with frames between counter flushes: a flush walks every counter (~600
/// instructions), which per 32-frame burst was 18 instructions per packet.
const BUSY_FLUSH: u32 = 8;
/// Longest sleep, so a stop request is seen promptly.
const SLEEP: Duration = Duration::from_millis(20);

impl Worker {
    pub fn new(s: WorkerSetup) -> Worker {
        let ports = s.ports.len();
        let poll_fds = s
            .queues
            .iter()
            .filter_map(|q| q.poll_fd())
            .chain(s.handoff.as_ref().map(|h| h.doorbell().fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let (nat, nat_requests) = match s.nat {
            Some((stage, rx)) => (Some(stage), Some(rx)),
            None => (None, None),
        };
        Worker {
            stats: Local::new(ports + s.tunnels.len()),
            ports: s.ports,
            queues: s.queues,
            pool: s.pool,
            burst: s.burst.min(256),
            fib4: s.fib4,
            fib6: s.fib6,
            adjacencies: s.adjacencies,
            tunnels: s.tunnels,
            qsbr: s.qsbr,
            counters: s.counters,
            control: s.control,
            icmp: Limiter::new(s.icmp_rate, s.icmp_burst),
            rx: Vec::with_capacity(256),
            handed: Vec::with_capacity(256),
            meta: vec![Meta::default(); 256],
            tx: (0..ports).map(|_| Vec::with_capacity(1024)).collect(),
            fragments: Vec::with_capacity(64),
            poll_fds,
            route_scratch: route::Scratch::default(),
            burst_hop: None,
            burst_underlay: None,
            originating: false,
            originated_forwarded: 0,
            nat,
            nat_requests,
            host: s.host,
            handoff: s.handoff,
            polls: 0,
        }
    }

    /// The poll loop, until `stop` is set.
    pub fn run(mut self, stop: &AtomicBool) {
        let mut idle = Idle::default();
        while !stop.load(Ordering::Relaxed) {
            let received = self.poll_once();
            if idle.should_sleep(received) && !self.queues.iter().any(|q| q.tx_pending()) {
                self.sleep_until_readable();
            }
        }
    }

    /// One pass over every port: receive a burst, run the pipeline, transmit, publish
    /// counters, report quiescence. Returns the frames received.
    pub fn poll_once(&mut self) -> usize {
        let mut received = 0;
        for port in 0..self.queues.len() {
            let mut rx = std::mem::take(&mut self.rx);
            let n = self.queues[port].recv_burst(&mut self.pool, &mut rx, self.burst);
            if n > 0 {
                received += n;
                self.process(port as u16, &mut rx);
            }
            self.rx = rx;
        }
        if self.handoff.is_some() {
            received += self.receive_handed();
        }
        // Counters are published every BUSY_FLUSH polls with frames, every IDLE_CHORES
        // polls without, and before the worker sleeps: a reader sees them at most a few
        // bursts late, and once traffic stops they are complete. The NAT's clock tick,
        // expiry and mailbox run on every poll with frames (sessions need the time) and
        // every IDLE_CHORES polls otherwise.
        self.polls = self.polls.wrapping_add(1);
        let idle_chores = self.polls.is_multiple_of(IDLE_CHORES);
        if (received > 0 || idle_chores) && self.nat.is_some() {
            self.nat_housekeeping();
        }
        self.flush_tx();
        if let Some(h) = &mut self.handoff {
            h.ring_bells();
        }
        if idle_chores || (received > 0 && self.polls.is_multiple_of(BUSY_FLUSH)) {
            self.flush_counters();
        }
        self.qsbr.quiescent();
        received
    }

    /// Publishes the worker's counters now, for a caller that drives `poll_once` by hand
    /// (benchmarks) and reads them right after.
    pub fn flush_counters(&mut self) {
        self.counters.flush(&mut self.stats);
    }

    fn sleep_until_readable(&mut self) {
        if self.nat.is_some() {
            self.nat_housekeeping();
        }
        self.flush_counters();
        if let Some(h) = &self.handoff {
            if !h.doorbell().going_to_sleep(|| h.pending()) {
                return;
            }
        }
        let fds = &mut self.poll_fds;
        self.qsbr.offline();
        if fds.is_empty() {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
            unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    SLEEP.as_millis() as libc::c_int,
                )
            };
        }
        self.qsbr.online();
        if let Some(h) = &self.handoff {
            h.doorbell().woke();
        }
        if let Some(stage) = &mut self.nat {
            stage.tick();
        }
    }

    /// Frames other workers handed over (their NAT session is ours): copied into our
    /// buffers, then run through the pipeline in runs of the same port. The hand-off is
    /// back in place before the pipeline runs: a handed frame may be handed on (a packet
    /// to another inside host's mapping goes round to the mapping's shard). Returns how
    /// many.
    fn receive_handed(&mut self) -> usize {
        let Some(mut handoff) = self.handoff.take() else {
            return 0;
        };
        let mut handed = std::mem::take(&mut self.handed);
        let burst = self.burst;
        let n = handoff.recv(burst, |port, ingress, bytes| {
            let Some(mut frame) = self.pool.alloc() else {
                self.stats.drop(port, Drop::NoBuffer);
                return;
            };
            if !frame.fill(bytes) {
                self.pool.free(frame);
                return;
            }
            frame.port = port;
            frame.ingress = ingress;
            self.stats.event(Event::HandedIn);
            handed.push(frame);
        });
        self.handoff = Some(handoff);
        let mut run = std::mem::take(&mut self.rx);
        let mut frames = handed.drain(..).peekable();
        while let Some(frame) = frames.next() {
            let port = frame.port;
            run.push(frame);
            if frames.peek().map(|f| f.port) != Some(port) {
                self.run_burst(port, &mut run, true);
            }
        }
        drop(frames);
        self.rx = run;
        self.handed = handed;
        n
    }

    /// Runs the pipeline over a burst received on `port`. The frames are consumed.
    pub fn process(&mut self, port: u16, frames: &mut Vec<Frame>) {
        self.run_burst(port, frames, false);
    }

    /// The pipeline over a burst that came in by `port`: received here, or `handed` over
    /// by the worker that received it (already counted and decapsulated there, with its
    /// ingress set; its NAT session is ours, so it is not steered again).
    fn run_burst(&mut self, port: u16, frames: &mut Vec<Frame>, handed: bool) {
        let n = frames.len().min(self.meta.len());
        let info = &self.ports[port as usize];
        let counts = &mut self.stats.ports[port as usize];
        if handed {
            frames.iter_mut().for_each(|f| f.port = port);
        } else {
            for f in frames.iter_mut() {
                f.port = port;
                f.ingress = port;
                counts.rx_packets += 1;
                counts.rx_bytes += f.len() as u64;
            }
        }
        // A handed-over frame was decapsulated by the worker that received it.
        let mut endpoint = (!handed && !self.tunnels.is_empty())
            .then(|| tunnel::Endpoint::new(&self.tunnels, &mut self.stats, self.ports.len()));
        let completed = parse::burst(
            &mut frames[..n],
            &mut self.meta[..n],
            info,
            endpoint.as_mut(),
        );
        self.stats.events[Event::ChecksumCompleted as usize] += completed;
        if let Some(nat) = &mut self.nat {
            let meta = &mut self.meta[..n];
            nat.prerouting(&mut frames[..n], meta, port, !handed, &mut self.stats);
        }
        route::burst(
            &mut self.meta[..n],
            &self.fib4,
            &self.fib6,
            &mut self.route_scratch,
        );
        self.burst_hop = None;
        self.burst_underlay = None;
        let forwarded = self.stats.events[Event::Forwarded as usize];
        let originated = self.originated_forwarded;
        let mut drain = frames.drain(..);
        let mut i = 0;
        while let Some(frame) = drain.next() {
            // The next frame's headers were likely evicted from L1 by the burst's others
            // (frames are 4 KiB apart, so their headers compete for a few L1 sets): start
            // loading them while this one goes out.
            if let Some(next) = drain.as_slice().first() {
                next.prefetch_head();
            }
            let meta = self.meta.get(i).copied().unwrap_or_default();
            self.dispatch(frame, meta);
            i += 1;
        }
        let sent_on = self.stats.events[Event::Forwarded as usize] - forwarded;
        let own = self.originated_forwarded - originated;
        self.stats.ports[port as usize].forwarded += sent_on - own;
    }

    fn dispatch(&mut self, mut frame: Frame, meta: Meta) {
        let in_port = frame.port;
        match meta.class {
            Class::Drop(reason) => self.drop(frame, reason),
            Class::Arp => {
                let (outcome, learned) = local::arp(&mut frame, &self.ports[in_port as usize]);
                self.share_learned(&frame, &outcome, learned);
                self.learn(in_port, learned);
                self.local_outcome(frame, outcome);
            }
            Class::V6Multicast => self.local_v6(frame),
            Class::Absorbed => {
                // Held by the NAT (an unsolicited SYN, an early fragment): taken by tern;
                // what it later releases is its own.
                self.count_local(&frame);
                self.pool.free(frame)
            }
            Class::Elsewhere(owner) => self.hand_off(frame, owner),
            Class::Refused(reason) => {
                self.icmp_error(
                    &frame,
                    icmp4::DEST_UNREACHABLE,
                    icmp4::CODE_ADMIN_PROHIBITED,
                    [0; 4],
                );
                self.drop(frame, reason)
            }
            Class::V4 { .. } | Class::V6 { .. } => {
                if meta.next_hop == NO_ROUTE {
                    self.no_route(frame);
                    return;
                }
                match self.memoized_hop(meta.next_hop, &frame) {
                    Hop::Local if self.tunnel_icmp(&frame) => {
                        self.count_local(&frame);
                        self.pool.free(frame)
                    }
                    Hop::Local if matches!(meta.class, Class::V4 { .. }) => {
                        let outcome = local::ipv4(&mut frame);
                        self.local_outcome(frame, outcome);
                    }
                    Hop::Local => self.local_v6(frame),
                    Hop::Broadcast => self.drop(frame, Drop::Ipv4NotForwardable),
                    Hop::Missing => self.drop(frame, Drop::BadAdjacency),
                    Hop::Send { port, mac } => {
                        let target = Ok(mac);
                        self.forward(frame, Egress::Port { port, target }, meta.nat)
                    }
                    Hop::Resolve { port, ip } => {
                        let target = Err(ip);
                        self.forward(frame, Egress::Port { port, target }, meta.nat)
                    }
                    Hop::Tunnel { tunnel, via } => {
                        self.forward(frame, Egress::Tunnel { tunnel, via }, meta.nat)
                    }
                }
            }
        }
    }

    /// Copies a frame to the worker that owns its NAT session and frees ours.
    fn hand_off(&mut self, frame: Frame, owner: u16) {
        let sent = self
            .handoff
            .as_mut()
            .is_some_and(|h| h.send(owner as usize, frame.port, frame.ingress, frame.data()));
        if sent {
            self.stats.event(Event::HandedOff);
            self.pool.free(frame);
        } else {
            self.drop(frame, Drop::HandoffFull);
        }
    }

    fn local_v6(&mut self, mut frame: Frame) {
        let port = frame.port;
        let (outcome, learned) = local::ipv6(&mut frame, &self.ports[port as usize]);
        self.share_learned(&frame, &outcome, learned);
        self.learn(frame.port, learned);
        self.local_outcome(frame, outcome);
    }

    /// An ARP reply or neighbour advertisement tern learned from goes to the kernel too,
    /// which resolves its peers with its own requests (see `io::host`).
    fn share_learned(&mut self, frame: &Frame, outcome: &Outcome, learned: local::Learned) {
        if let (Some(host), Outcome::Consumed, Some(_)) = (&self.host, outcome, learned) {
            host.deliver(frame.port, frame.data());
        }
    }

    /// [`Self::hop`] through the burst's memo (`burst_hop`).
    fn memoized_hop(&mut self, next_hop: u32, frame: &Frame) -> Hop {
        match self.burst_hop {
            Some((nh, hop)) if nh == next_hop => hop,
            _ => {
                let (hop, every_packet) = self.hop_for(next_hop, frame);
                if every_packet {
                    self.burst_hop = Some((next_hop, hop));
                }
                hop
            }
        }
    }

    fn hop(&self, next_hop: u32, frame: &Frame) -> Hop {
        self.hop_for(next_hop, frame).0
    }

    /// Where `next_hop` sends `frame`, and whether that holds for every packet to it (all
    /// adjacencies but an ECMP group, whose member depends on the flow).
    fn hop_for(&self, next_hop: u32, frame: &Frame) -> (Hop, bool) {
        let summarize = |adj: &Adjacency| match *adj {
            Adjacency::Local => Some(Hop::Local),
            Adjacency::Broadcast => Some(Hop::Broadcast),
            Adjacency::Glean { port } => Some(Hop::Resolve { port, ip: None }),
            Adjacency::Incomplete { port, ip } => Some(Hop::Resolve { port, ip: Some(ip) }),
            Adjacency::Neighbor { port, mac, .. } => Some(Hop::Send { port, mac }),
            Adjacency::Tunnel { tunnel, via } => Some(Hop::Tunnel { tunnel, via }),
            Adjacency::Ecmp(_) => None,
        };
        let Some(adj) = self.adjacencies.get(&self.qsbr, next_hop) else {
            return (Hop::Missing, false);
        };
        if let Some(hop) = summarize(adj) {
            return (hop, true);
        }
        let Adjacency::Ecmp(members) = adj else {
            return (Hop::Missing, false);
        };
        if members.is_empty() {
            return (Hop::Missing, false);
        }
        let member = members[(flow_hash(frame.data()) % members.len() as u32) as usize];
        let hop = self
            .adjacencies
            .get(&self.qsbr, member)
            .and_then(summarize)
            .unwrap_or(Hop::Missing);
        (hop, false)
    }

    /// TTL, MTU (ICMP too big), SNAT, IPv4 fragmentation, then out through `egress`.
    fn forward(&mut self, mut frame: Frame, egress: Egress, nat: NatMark) {
        let v4 = eth::ethertype(frame.data()) == eth::TYPE_IPV4;
        let alive = if v4 {
            ttl::decrement_v4(frame.data_mut())
        } else {
            ttl::decrement_v6(frame.data_mut())
        };
        if !alive {
            if v4 {
                self.icmp_error(&frame, icmp4::TIME_EXCEEDED, 0, [0; 4]);
            } else {
                self.icmp_error(&frame, icmp6::TIME_EXCEEDED, 0, [0; 4]);
            }
            return self.drop(frame, Drop::TtlExceeded);
        }
        let (mtu, slot) = match egress {
            Egress::Port { port, .. } => (
                self.ports.get(port as usize).map_or(0, |p| p.mtu),
                port as usize,
            ),
            Egress::Tunnel { tunnel, .. } => (
                self.tunnels.get(tunnel).map_or(0, |t| t.mtu()),
                self.ports.len() + tunnel as usize,
            ),
        };
        let fits = mtu::fits(&frame, mtu);
        // Too big with DF (or IPv6): the error goes to the untranslated source, so this
        // comes before SNAT.
        if !fits && (!v4 || mtu::dont_fragment(&frame)) {
            if v4 {
                let [hi, lo] = mtu.to_be_bytes();
                let rest = [0, 0, hi, lo];
                self.icmp_error(
                    &frame,
                    icmp4::DEST_UNREACHABLE,
                    icmp4::CODE_FRAG_NEEDED,
                    rest,
                );
            } else {
                self.icmp_error(&frame, icmp6::PACKET_TOO_BIG, 0, (mtu as u32).to_be_bytes());
            }
            return self.drop(frame, Drop::TooBig);
        }
        if v4 {
            if let Some(stage) = &mut self.nat {
                let ingress = frame.ingress as usize;
                match stage.postrouting(&mut frame, nat, ingress, slot) {
                    Ok(true) => self.stats.event(Event::NatTranslated),
                    Ok(false) => {}
                    Err((reason, refuse)) => {
                        if refuse {
                            let code = icmp4::CODE_ADMIN_PROHIBITED;
                            self.icmp_error(&frame, icmp4::DEST_UNREACHABLE, code, [0; 4]);
                        }
                        return self.drop(frame, reason);
                    }
                }
            }
        }
        if !fits {
            // A worker-owned scratch list: fragmenting allocates no Vec per packet.
            let mut fragments = std::mem::take(&mut self.fragments);
            let Some(count) = mtu::fragment_v4(&frame, mtu, &mut self.pool, &mut fragments) else {
                self.fragments = fragments;
                return self.drop(frame, Drop::NoBuffer);
            };
            self.stats.event(Event::Fragmented);
            self.stats.events[Event::FragmentsSent as usize] += count as u64;
            if !self.originating {
                self.stats.ports[frame.port as usize].forwarded += 1;
            }
            self.pool.free(frame);
            self.as_originator(|w| {
                for f in fragments.drain(..) {
                    w.transmit(f, egress);
                }
            });
            self.fragments = fragments;
            return;
        }
        self.transmit(frame, egress);
    }

    #[inline]
    fn transmit(&mut self, frame: Frame, egress: Egress) {
        match egress {
            Egress::Port { port, target } => self.emit(frame, port, target),
            Egress::Tunnel { tunnel, via } => self.encapsulate(frame, tunnel, via),
        }
    }

    /// Encapsulates into tunnel `t` and routes the outer packet to the remote endpoint.
    /// The outer route must leave by a port: a route to the remote through a tunnel would
    /// loop, and is dropped and counted. Out of line, so plain forwarding does not carry
    /// its code and registers.
    #[inline(never)]
    fn encapsulate(&mut self, mut frame: Frame, t: u16, via: u32) {
        let Some(tunnel) = self.tunnels.get(t) else {
            return self.drop(frame, Drop::BadAdjacency);
        };
        let inner_bytes = frame.len() - eth::LEN;
        if let Err(reason) = tunnel::encap(&mut frame, tunnel) {
            return self.drop(frame, reason);
        }
        // The adjacency is stacked on the remote's next hop: no FIB lookup here, and
        // mostly not even the adjacency table (`burst_underlay`).
        let underlay = match self.burst_underlay {
            Some(u) if u.via == via => u,
            _ => match self.underlay_neighbor(via, &frame) {
                Ok(u) => u,
                Err(hop) => return self.encapsulated_unresolved(frame, t, via, hop, inner_bytes),
            },
        };
        if !self.outer_fits(&frame, t, underlay.mtu) {
            return self.drop(frame, Drop::TooBig);
        }
        self.count_encapsulated(t, inner_bytes);
        frame.data_mut()[..12].copy_from_slice(&underlay.macs);
        self.count_forwarded();
        self.tx[underlay.port as usize].push(frame);
    }

    /// The underlay next hop `via` when it is a resolved neighbour on a port, memoized
    /// for the burst when every packet to it goes there (not ECMP); else the hop it is.
    fn underlay_neighbor(&mut self, via: u32, frame: &Frame) -> Result<Underlay, Hop> {
        let (hop, every_packet) = self.hop_for(via, frame);
        let Hop::Send { port, mac } = hop else {
            return Err(hop);
        };
        let p = self.ports.get(port as usize).ok_or(hop)?;
        let mut macs = [0; 12];
        macs[..6].copy_from_slice(&mac);
        macs[6..].copy_from_slice(&p.mac);
        let u = Underlay {
            via,
            port,
            mtu: p.mtu,
            macs,
        };
        if every_packet {
            self.burst_underlay = Some(u);
        }
        Ok(u)
    }

    /// An encapsulated frame whose underlay next hop is not a resolved neighbour: punted
    /// for resolution, or dropped (no route, a loop into a tunnel, a local address).
    #[cold]
    fn encapsulated_unresolved(
        &mut self,
        frame: Frame,
        t: u16,
        via: u32,
        hop: Hop,
        inner_bytes: usize,
    ) {
        if via == NO_ROUTE {
            return self.drop(frame, Drop::NoRoute);
        }
        let (port, ip) = match hop {
            Hop::Resolve { port, ip } => (port, ip),
            Hop::Tunnel { .. } => return self.drop(frame, Drop::TunnelLoop),
            Hop::Local | Hop::Broadcast => return self.drop(frame, Drop::LocalUnhandled),
            Hop::Send { .. } | Hop::Missing => return self.drop(frame, Drop::BadAdjacency),
        };
        let port_mtu = self.ports.get(port as usize).map_or(0, |p| p.mtu);
        if !self.outer_fits(&frame, t, port_mtu) {
            return self.drop(frame, Drop::TooBig);
        }
        self.count_encapsulated(t, inner_bytes);
        self.emit(frame, port, Err(ip));
    }

    /// Whether the outer packet fits the egress port. If not, the tunnel MTU is configured
    /// above what the port carries: the port's MTU is learnt as the tunnel's path MTU, so
    /// the next packets are refused or fragmented before encapsulation.
    #[inline(always)]
    fn outer_fits(&mut self, frame: &Frame, t: u16, port_mtu: u16) -> bool {
        if mtu::fits(frame, port_mtu) {
            return true;
        }
        let lowered = self
            .tunnels
            .get(t)
            .is_some_and(|tunnel| tunnel.lower_path_mtu(port_mtu as u32));
        if lowered {
            self.stats.event(Event::TunnelMtuLowered);
        }
        false
    }

    /// Counts a packet of `inner_bytes` sent into tunnel `t`.
    #[inline(always)]
    fn count_encapsulated(&mut self, t: u16, inner_bytes: usize) {
        self.stats.event(Event::TunnelEncapsulated);
        if let Some(c) = self.stats.ports.get_mut(self.ports.len() + t as usize) {
            c.tx_packets += 1;
            c.tx_bytes += inner_bytes as u64;
        }
    }

    /// An ICMP error to us about an outer packet of one of our tunnels: lowers the
    /// tunnel's path MTU and relays an error to the inner source (RFC 2003 §4). Returns
    /// whether the packet was such an error (and is consumed).
    fn tunnel_icmp(&mut self, frame: &Frame) -> bool {
        if self.tunnels.is_empty() {
            return false;
        }
        let ip = &frame.data()[eth::LEN..];
        let Some((quoted, too_big)) = tunnel::quoted_outer(ip) else {
            return false;
        };
        let Some(e) = tunnels::icmp::outer_error(&self.tunnels, quoted, too_big) else {
            return false;
        };
        if e.mtu_lowered {
            self.stats.event(Event::TunnelMtuLowered);
        }
        if let Some(relay) = e.relay {
            let (kind, code, rest) = tunnel::relay_fields(relay, e.inner_v6);
            let inner = &quoted[e.inner..];
            self.stats.event(Event::TunnelIcmpRelayed);
            self.icmp_error_about(frame.port, inner, !e.inner_v6, kind, code, rest);
        }
        true
    }

    /// Rewrites and queues a frame on `out`, or punts it for neighbour resolution.
    /// Inlined, with the punt out of line: a call here cost 16 instructions of argument
    /// moves and register saves per forwarded packet.
    #[inline]
    fn emit(&mut self, mut frame: Frame, out: u16, target: Result<Mac, Option<IpAddr>>) {
        let Some(port) = self.ports.get(out as usize) else {
            return self.drop(frame, Drop::BadAdjacency);
        };
        match target {
            Ok(mac) => {
                rewrite::macs(frame.data_mut(), &mac, &port.mac);
                self.count_forwarded();
                self.tx[out as usize].push(frame);
            }
            Err(ip) => self.punt_unresolved(frame, out, ip),
        }
    }

    /// Hands a frame whose neighbour (`ip`, or its own destination) is unresolved to the
    /// control plane, which resolves it and sends the frame on.
    /// It looks the port up again rather than take its MAC from `emit`: passing the MAC
    /// made `emit` copy it on every forwarded packet (3 instructions each, callgrind).
    #[cold]
    fn punt_unresolved(&mut self, mut frame: Frame, out: u16, ip: Option<IpAddr>) {
        let Some(mac) = self.ports.get(out as usize).map(|p| p.mac) else {
            return self.drop(frame, Drop::BadAdjacency);
        };
        let ip = ip.unwrap_or_else(|| destination(frame.data()));
        frame.data_mut()[6..12].copy_from_slice(&mac);
        let msg = ControlMsg::Resolve {
            port: out,
            ip,
            frame: frame.data().to_vec(),
        };
        if self.control.try_send(msg).is_ok() {
            self.stats.event(Event::Punted);
            if !self.originating {
                self.stats.ports[frame.port as usize].punted += 1;
            }
            self.pool.free(frame);
        } else {
            self.drop(frame, Drop::NeighborUnresolved);
        }
    }

    fn local_outcome(&mut self, frame: Frame, outcome: Outcome) {
        if !matches!(outcome, Outcome::Drop(_)) {
            self.count_local(&frame);
        }
        match outcome {
            Outcome::ReplyOnPort => {
                let port = frame.port;
                let e = if eth::ethertype(frame.data()) == eth::TYPE_ARP {
                    Event::ArpReplied
                } else {
                    Event::NdpReplied
                };
                self.stats.event(e);
                self.tx[port as usize].push(frame);
            }
            Outcome::ReplyRouted => {
                self.stats.event(Event::EchoReplied);
                self.send_originated(frame);
            }
            Outcome::ToHost { unreachable } => {
                if self
                    .host
                    .as_ref()
                    .is_some_and(|h| h.deliver(frame.port, frame.data()))
                {
                    self.stats.event(Event::ToHost);
                    self.pool.free(frame);
                    return;
                }
                if !unreachable {
                    self.drop(frame, Drop::LocalUnhandled);
                    return;
                }
                if eth::ethertype(frame.data()) == eth::TYPE_IPV4 {
                    self.icmp_error(
                        &frame,
                        icmp4::DEST_UNREACHABLE,
                        icmp4::CODE_PORT_UNREACHABLE,
                        [0; 4],
                    );
                } else {
                    self.icmp_error(
                        &frame,
                        icmp6::DEST_UNREACHABLE,
                        icmp6::CODE_PORT_UNREACHABLE,
                        [0; 4],
                    );
                }
                self.pool.free(frame);
            }
            Outcome::Consumed => self.pool.free(frame),
            Outcome::Drop(reason) => self.drop(frame, reason),
        }
    }

    fn no_route(&mut self, frame: Frame) {
        if eth::ethertype(frame.data()) == eth::TYPE_IPV4 {
            self.icmp_error(
                &frame,
                icmp4::DEST_UNREACHABLE,
                icmp4::CODE_NET_UNREACHABLE,
                [0; 4],
            );
        } else {
            self.icmp_error(
                &frame,
                icmp6::DEST_UNREACHABLE,
                icmp6::CODE_NO_ROUTE,
                [0; 4],
            );
        }
        self.drop(frame, Drop::NoRoute);
    }

    /// Sends an ICMP error about `about` (rate limit and RFC rules permitting), sourced from
    /// the address of the port it arrived on.
    fn icmp_error(&mut self, about: &Frame, kind: u8, code: u8, rest: [u8; 4]) {
        let v4 = eth::ethertype(about.data()) == eth::TYPE_IPV4;
        self.icmp_error_about(about.port, &about.data()[eth::LEN..], v4, kind, code, rest);
    }

    /// Sends an ICMP error about the IP packet `ip` that arrived on `in_port`.
    fn icmp_error_about(
        &mut self,
        in_port: u16,
        ip: &[u8],
        v4: bool,
        kind: u8,
        code: u8,
        rest: [u8; 4],
    ) {
        let Some(port) = self.ports.get(in_port as usize) else {
            return;
        };
        let allowed = if v4 {
            icmp::may_answer_v4(ip)
        } else {
            icmp::may_answer_v6(ip)
        };
        if !allowed {
            return;
        }
        if !self.icmp.allow() {
            self.stats.event(Event::IcmpRateLimited);
            return;
        }
        let built = if v4 {
            port.v4_source()
                .and_then(|src| icmp::error_v4(&mut self.pool, src, ip, kind, code, rest))
        } else {
            icmp::error_v6(&mut self.pool, port.v6_source(), ip, kind, code, rest)
        };
        match built {
            Some(mut reply) => {
                reply.port = in_port;
                if let (true, Some(stage)) = (v4, &mut self.nat) {
                    // About a packet the NAT translated: quote what its sender sent.
                    stage
                        .shard
                        .originated_error(&mut reply.data_mut()[eth::LEN..]);
                }
                self.stats.event(Event::IcmpSent);
                self.send_originated(reply);
            }
            None => {
                let origin = self.stats.origin();
                self.stats.drop(origin, Drop::NoBuffer)
            }
        }
    }

    /// Routes a packet tern originated (no TTL decrement).
    fn send_originated(&mut self, frame: Frame) {
        self.as_originator(|w| w.route_originated(frame));
    }

    /// Runs `f` with the frames it sends counted as tern's own (see `originating`).
    fn as_originator<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        let was = std::mem::replace(&mut self.originating, true);
        let r = f(self);
        self.originating = was;
        r
    }

    fn route_originated(&mut self, frame: Frame) {
        let data = frame.data();
        let next_hop = if eth::ethertype(data) == eth::TYPE_IPV4 {
            self.fib4.lookup(ipv4::dst(&data[eth::LEN..]))
        } else {
            self.fib6.lookup(ipv6::dst(&data[eth::LEN..]))
        };
        let Some(next_hop) = next_hop else {
            return self.drop(frame, Drop::NoRoute);
        };
        match self.hop(next_hop, &frame) {
            Hop::Send { port, mac } => self.emit(frame, port, Ok(mac)),
            Hop::Resolve { port, ip } => self.emit(frame, port, Err(ip)),
            Hop::Tunnel { tunnel, via } => self.encapsulate(frame, tunnel, via),
            // A reply to ourselves or to a broadcast address: nothing to send.
            _ => self.drop(frame, Drop::LocalUnhandled),
        }
    }

    fn learn(&mut self, port: u16, learned: local::Learned) {
        if let Some((ip, mac)) = learned {
            // Best effort: a full channel only delays learning until the next packet.
            let _ = self.control.try_send(ControlMsg::Learned { port, ip, mac });
        }
    }

    fn drop(&mut self, frame: Frame, reason: Drop) {
        let row = if self.originating {
            self.stats.origin()
        } else {
            frame.port
        };
        self.stats.drop(row, reason);
        self.pool.free(frame);
    }

    /// A frame sent on towards its next hop: a received one counts on its port (as the
    /// burst's `forwarded` events less tern's own, in `run_burst`).
    #[inline(always)]
    fn count_forwarded(&mut self) {
        self.stats.event(Event::Forwarded);
        self.originated_forwarded += self.originating as u64;
    }

    /// A received frame taken by tern (see `counters::PortCounts::local`).
    fn count_local(&mut self, frame: &Frame) {
        if !self.originating {
            self.stats.ports[frame.port as usize].local += 1;
        }
    }

    /// Once per poll: the NAT clock, expiry with bounded work, ICMP port unreachable for
    /// SYNs held their 6 s, held fragments whose first fragment came, control requests.
    fn nat_housekeeping(&mut self) {
        let Some(stage) = &mut self.nat else {
            return;
        };
        stage.tick();
        let now = stage.now;
        let timed_out = stage.shard.stats.fragments_timed_out;
        let due = stage.shard.expire(now, ::nat::shard::EXPIRE_BUDGET);
        let timed_out = stage.shard.stats.fragments_timed_out - timed_out;
        let released = stage.shard.released_fragments();
        // Held fragments were counted as taken when they arrived: their end is tern's.
        let origin = self.stats.origin();
        self.stats
            .drop_many(origin, Drop::NatFragmentTimeout, timed_out);
        for (port, packet) in due {
            self.stats.event(Event::NatSynAnswered);
            let code = icmp4::CODE_PORT_UNREACHABLE;
            self.icmp_error_about(port, &packet, true, icmp4::DEST_UNREACHABLE, code, [0; 4]);
        }
        for (port, packet) in released {
            self.stats.event(Event::NatFragmentReleased);
            self.reinject(port, &packet);
        }
        if let (Some(rx), Some(stage)) = (&self.nat_requests, &mut self.nat) {
            while let Ok(req) = rx.try_recv() {
                crate::conntrack::serve(stage, req);
            }
        }
    }

    /// Runs an IPv4 packet the NAT held back through the pipeline as if it had just
    /// arrived on `port`.
    fn reinject(&mut self, port: u16, ip: &[u8]) {
        let Some(info) = self.ports.get(port as usize) else {
            return;
        };
        let origin = self.stats.origin();
        let Some(mut frame) = self.pool.alloc() else {
            self.stats.drop(origin, Drop::NoBuffer);
            return;
        };
        let mut bytes = [0u8; crate::buf::MAX_FRAME];
        let len = eth::LEN + ip.len();
        if len > bytes.len() {
            self.pool.free(frame);
            return;
        }
        eth::write(&mut bytes, &info.mac, &[0; 6], eth::TYPE_IPV4);
        bytes[eth::LEN..len].copy_from_slice(ip);
        if !frame.fill(&bytes[..len]) {
            self.pool.free(frame);
            return;
        }
        // Not received again (the frame was counted when it was held), nor steered
        // (its shard held it) nor decapsulated (it was, on arrival).
        frame.ingress = port;
        let mut burst = vec![frame];
        self.as_originator(|w| w.run_burst(port, &mut burst, true));
    }

    fn flush_tx(&mut self) {
        for port in 0..self.tx.len() {
            if self.tx[port].is_empty() {
                continue;
            }
            let queued = self.tx[port].len();
            let bytes: u64 = self.tx[port].iter().map(|f| f.len() as u64).sum();
            let sent = self.queues[port].send_burst(&mut self.tx[port], &mut self.pool);
            let counts = &mut self.stats.ports[port];
            counts.tx_packets += sent as u64;
            counts.tx_bytes += bytes;
            counts.tx_errors += (queued - sent) as u64;
        }
    }
}

/// The destination address of the IP packet in `frame`.
fn destination(frame: &[u8]) -> IpAddr {
    let ip = &frame[eth::LEN..];
    if eth::ethertype(frame) == eth::TYPE_IPV4 {
        IpAddr::V4(ipv4::dst(ip))
    } else {
        IpAddr::V6(ipv6::dst(ip))
    }
}

/// A flow hash over addresses, protocol and (unfragmented) ports, for ECMP member choice.
fn flow_hash(frame: &[u8]) -> u32 {
    let ip = &frame[eth::LEN..];
    let (addrs, proto, l4) = if eth::ethertype(frame) == eth::TYPE_IPV4 {
        let ihl = ipv4::header_len(ip);
        let l4 = if !ipv4::is_fragment(ip) {
            ip.get(ihl..ihl + 4)
        } else {
            None
        };
        (&ip[12..20], ipv4::proto(ip), l4)
    } else {
        (
            &ip[8..40],
            ipv6::next_header(ip),
            ip.get(ipv6::LEN..ipv6::LEN + 4),
        )
    };
    let mut h: u32 = 0x811c9dc5 ^ proto as u32;
    for &b in addrs.iter().chain(l4.unwrap_or(&[])) {
        h = (h ^ b as u32).wrapping_mul(0x01000193);
    }
    h ^ (h >> 16)
}
