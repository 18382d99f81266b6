//! A worker: one poll loop on one core, with its own queue on every port, its own frame
//! pool and counters. It reads the FIB and the adjacency table lock-free and reports a
//! quiescent state once per loop iteration; everything that needs shared mutable state
//! (neighbour resolution, learning) goes to the control plane over a bounded channel.
//!
//! This file is the loop (poll, sleep, hand-off between workers) and the dispatch of a
//! classified burst; the stages after classification are methods in `forward.rs` (hop,
//! TTL, MTU, NAT post-routing, rewrite, encapsulation), `originate.rs` (local delivery
//! and ICMP the worker sends) and `nat_chores.rs` (session expiry, the NAT mailbox,
//! reinjection). The stages before it, and every per-packet function, are in `pipeline/`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use lpm::nexthop::NextHopView;
use lpm::{Fib4Reader, Fib6Reader, QsbrThread, NO_ROUTE};

use crate::adjacency::Adjacency;
use crate::buf::{Frame, Pool};
use crate::capture::{self, Captures};
use crate::control_msg::ControlMsg;
use crate::counters::{DropReason, Event, Local, WorkerCounters};
use crate::handoff::Handoff;
use crate::idle::Idle;
use crate::io::host::HostInterfaces;
use crate::io::PortQueue;
use crate::nat_mailbox::NatRequest;
use crate::pipeline::icmp::Limiter;
use crate::pipeline::local::{self};
use crate::pipeline::{nat, parse, route, tunnel, Class, Meta, PortInfo};
use crate::trace::Tracer;
use crate::wire::icmp4;

mod forward;
mod memo;
mod nat_chores;
mod originate;
mod trace;

use forward::{Egress, Hop, Underlay};
use memo::BurstMemo;

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
    /// Packet captures the ctl server starts on ports (capture/).
    pub captures: Arc<Captures>,
    /// The packet trace (trace/).
    pub tracer: Arc<Tracer>,
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
    captures: Arc<Captures>,
    tracer: Arc<Tracer>,
    /// Counters before a traced frame's dispatch (worker/trace.rs).
    trace_snapshot: Option<Box<trace::Before>>,
    id: usize,
    host: Option<Arc<HostInterfaces>>,
    handoff: Option<Handoff>,
    /// Polls so far (wrapping), to space out the idle chores.
    polls: u32,
    /// What the worker sleeps on: one entry per queue that has a descriptor.
    poll_fds: Vec<libc::pollfd>,
    route_scratch: route::Scratch,
    /// The burst's next hop → hop memo (memo.rs).
    burst_hop: BurstMemo<Hop>,
    /// The same for the underlay next hop of tunnels (which alternates with the route's on
    /// every encapsulated packet), kept only for a resolved neighbour and with everything
    /// the outer frame needs from it.
    burst_underlay: BurstMemo<Underlay>,
    /// Set while tern sends frames of its own (ICMP errors, echo replies, fragments after
    /// the first, released NAT holds): their fate is not a received frame's outcome, so
    /// their drops count in the `originated` row and nothing counts as forwarded.
    originating: bool,
    /// Frames of tern's own counted as `forwarded` events: a burst's received frames that
    /// went on are its `forwarded` events less these (see `run_burst`), so the per-port
    /// count costs the forwarding path one add.
    originated_forwarded: u64,
}

/// Empty polls between the chores an idle worker still does (see `poll_once`).
const IDLE_CHORES: u32 = 64;
/// Polls with frames between counter flushes: a flush walks every counter (~600
/// instructions, 18 per packet of a 32-frame burst if it ran every poll).
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
            burst_hop: BurstMemo::new(),
            burst_underlay: BurstMemo::new(),
            originating: false,
            originated_forwarded: 0,
            nat,
            nat_requests,
            host: s.host,
            handoff: s.handoff,
            captures: s.captures,
            tracer: s.tracer,
            trace_snapshot: None,
            id: s.id,
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
                if let Some(capture) = self.captures.on(port) {
                    capture.offer(capture::RX, rx.iter().map(|f| f.data()));
                }
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
                self.stats.drop(port, DropReason::NoBuffer);
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
        // Two instances, as parse has for the partial-checksum test: bursts with nothing
        // to trace run one in which no trace code exists.
        if self.tracer.on() {
            self.run_stages::<true>(port, frames, handed)
        } else {
            self.run_stages::<false>(port, frames, handed)
        }
    }

    fn run_stages<const TRACED: bool>(&mut self, port: u16, frames: &mut Vec<Frame>, handed: bool) {
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
        let mut trace = if TRACED {
            self.trace_received(port, &frames[..n])
        } else {
            Vec::new()
        };
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
        if TRACED && !trace.is_empty() {
            self.trace_parsed(&mut trace, frames, &self.meta);
        }
        if let Some(nat) = &mut self.nat {
            let meta = &mut self.meta[..n];
            nat.prerouting(&mut frames[..n], meta, port, !handed, &mut self.stats);
            if TRACED && !trace.is_empty() {
                self.trace_nat(&mut trace, frames, &self.meta);
            }
        }
        route::burst(
            &mut self.meta[..n],
            &self.fib4,
            &self.fib6,
            &mut self.route_scratch,
        );
        if TRACED && !trace.is_empty() {
            self.trace_routed(&mut trace, frames, &self.meta);
        }
        self.burst_hop.clear();
        self.burst_underlay.clear();
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
            let traced = TRACED && i < trace.len();
            if traced {
                self.trace_before(&frame);
            }
            self.dispatch::<TRACED>(frame, meta);
            if let Some(r) = trace.get_mut(i).filter(|_| traced) {
                self.trace_after(r);
            }
            i += 1;
        }
        if TRACED && !trace.is_empty() {
            self.tracer.keep(trace);
        }
        let sent_on = self.stats.events[Event::Forwarded as usize] - forwarded;
        let own = self.originated_forwarded - originated;
        self.stats.ports[port as usize].forwarded += sent_on - own;
    }

    /// `TRACED` only makes two copies, one for each instance of the burst loop: each has
    /// one caller, so each is inlined into its loop (a function with two callers is
    /// called out of line, ~20 instructions a packet more).
    fn dispatch<const TRACED: bool>(&mut self, mut frame: Frame, meta: Meta) {
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
                    Hop::Broadcast => self.drop(frame, DropReason::Ipv4NotForwardable),
                    Hop::Missing => self.drop(frame, DropReason::BadAdjacency),
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
            self.drop(frame, DropReason::HandoffFull);
        }
    }

    fn drop(&mut self, frame: Frame, reason: DropReason) {
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

    fn flush_tx(&mut self) {
        for port in 0..self.tx.len() {
            if self.tx[port].is_empty() {
                continue;
            }
            if let Some(capture) = self.captures.on(port) {
                capture.offer(capture::TX, self.tx[port].iter().map(|f| f.data()));
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
