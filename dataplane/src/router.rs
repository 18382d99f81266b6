//! Starting and stopping a router: ports, workers, the control plane and the ctl socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use lpm::Qsbr;

use crate::buf::Pool;
use crate::config::{masquerade_address, Backend, Config};
use crate::control::Control;
use crate::control_msg::{ControlMsg, Feed};
use crate::counters::WorkerCounters;
use crate::handoff::Handoff;
use crate::io::host::HostInterfaces;
use crate::io::memory::MemoryPort;
use crate::io::{tap, xdp, PortQueue, PortTx};
use crate::nat_mailbox::{NatControl, NatRequest};
use crate::pipeline::PortInfo;
use crate::worker::{Worker, WorkerSetup};

/// Messages the workers may queue for the control plane before punts are dropped.
const CONTROL_QUEUE: usize = 4096;

/// The NAT rules of the configuration with this process's random seed.
fn seeded(rules: &nat::Rules) -> nat::Rules {
    let mut r = rules.clone();
    r.seed = ahash::RandomState::new().hash_one(std::process::id());
    r
}

type NatStages = Vec<Option<(crate::pipeline::nat::Stage, mpsc::Receiver<NatRequest>)>>;

/// One NAT shard per worker, sharing the external port map, and the mailboxes the
/// control plane reaches them through.
fn nat_shards(config: &Config) -> (NatStages, Option<NatControl>) {
    let Some(n) = &config.nat else {
        return (Vec::new(), None);
    };
    let rules = Arc::new(seeded(&n.rules));
    let external = n.external_addresses(&config.interfaces, &config.tunnels);
    let ports = Arc::new(nat::PortMap::new(external));
    for f in &rules.frontends {
        ports.reserve(
            f.external.addr,
            nat::ports::Space::of(f.proto),
            f.external.port,
        );
    }
    let slots = config.interfaces.len() + config.tunnels.len();
    let outside: Vec<(usize, Option<u32>)> = n
        .outside
        .iter()
        .map(|&o| {
            (
                o,
                masquerade_address(o, &config.interfaces, &config.tunnels),
            )
        })
        .collect();
    let mut stages = Vec::new();
    let mut mailboxes = Vec::new();
    for id in 0..config.workers {
        let shard = nat::Shard::new(id, rules.clone(), ports.clone());
        let mut stage = crate::pipeline::nat::Stage::new(shard, slots, &n.inside, &outside);
        stage.shards = config.workers;
        let (tx, rx) = mpsc::sync_channel(16);
        stages.push(Some((stage, rx)));
        mailboxes.push(tx);
    }
    (stages, Some(NatControl::new(rules, mailboxes, ports)))
}

/// A running router.
pub struct Router {
    stop: Arc<AtomicBool>,
    control: SyncSender<ControlMsg>,
    threads: Vec<JoinHandle<()>>,
    /// The memory ports, for interfaces with `backend = "memory"` (tests).
    pub memory: Vec<Option<MemoryPort>>,
    ctl_server: Option<crate::ctl::Server>,
    bgp: Option<Arc<bgp_glue::Bgp>>,
    fpm: Option<Arc<bgp_glue::fpm::Fpm>>,
    metrics: Option<crate::metrics::Server>,
}

impl Router {
    /// Opens the ports, builds the tables and starts one thread per worker plus the control
    /// thread. With `serve_ctl`, also listens on the configured unix socket.
    pub fn start(config: &Config, serve_ctl: bool) -> Result<Router, String> {
        let ports: Arc<[PortInfo]> = config.interfaces.iter().map(PortInfo::new).collect();
        let captures = Arc::new(crate::capture::Captures::new(ports.len()));
        let tracer = Arc::new(crate::trace::Tracer::default());
        // Each worker's frames come from its own region, which its AF_XDP sockets share as
        // their UMEM: so the pools exist before the ports.
        let mut pools = Vec::with_capacity(config.workers);
        for w in 0..config.workers {
            pools.push(
                Pool::try_new(config.pool)
                    .map_err(|e| format!("worker {w}: cannot map {} buffers: {e}", config.pool))?,
            );
        }
        let xdp_ports = config
            .interfaces
            .iter()
            .filter(|i| i.backend == Backend::AfXdp)
            .count();
        let mut umems: Vec<xdp::Umem> = pools.iter().map(|p| xdp::Umem::of(p, xdp_ports)).collect();
        // queues[worker][port]
        let mut queues: Vec<Vec<Box<dyn PortQueue>>> =
            (0..config.workers).map(|_| Vec::new()).collect();
        let mut senders: Vec<Arc<dyn PortTx>> = Vec::new();
        let mut memory = Vec::new();
        for iface in &config.interfaces {
            match iface.backend {
                Backend::Tap => {
                    let qs = tap::open(&iface.name, config.workers, iface.mtu)
                        .map_err(|e| format!("cannot open TAP device {}: {e}", iface.name))?;
                    let tx = qs[0].sender().map_err(|e| format!("{}: {e}", iface.name))?;
                    senders.push(Arc::new(tx));
                    for (w, q) in qs.into_iter().enumerate() {
                        queues[w].push(Box::new(q));
                    }
                    memory.push(None);
                }
                Backend::AfXdp => {
                    let (qs, tx, mode) = xdp::open(&iface.name, iface.mtu, &iface.mac, &mut umems)
                        .map_err(|e| format!("cannot open {} for AF_XDP: {e}", iface.name))?;
                    tracing::info!(
                        interface = %iface.name,
                        xdp = if mode.native { "native" } else { "generic" },
                        af_xdp = if mode.zero_copy { "zero-copy" } else { "copy" },
                        "AF_XDP port up"
                    );
                    senders.push(Arc::new(tx));
                    for (w, q) in qs.into_iter().enumerate() {
                        queues[w].push(Box::new(q));
                    }
                    memory.push(None);
                }
                Backend::Memory => {
                    let port = MemoryPort::default();
                    senders.push(Arc::new(port.clone()));
                    // One shared queue pair: with several workers they take turns on it.
                    for q in queues.iter_mut() {
                        q.push(Box::new(port.clone()));
                    }
                    memory.push(Some(port));
                }
            }
        }
        let qsbr = Qsbr::new();
        let counters: Vec<Arc<WorkerCounters>> = (0..config.workers)
            .map(|_| Arc::new(WorkerCounters::new(ports.len() + config.tunnels.len())))
            .collect();
        let host_senders = senders.clone();
        let control = Control::new(
            config,
            ports.clone(),
            senders,
            qsbr.clone(),
            counters.clone(),
        )?;
        let (fib4, fib6, adjacencies) = control.readers();
        let tunnels = control.tunnels();
        let (mut nat_stages, nat_control) = nat_shards(config);
        let mut control = control;
        let nat_shards = nat_control.as_ref().map(NatControl::shards);
        control.nat = nat_control;
        let (control_tx, control_rx) = mpsc::sync_channel(CONTROL_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let host = if config.host_interfaces {
            let host = Arc::new(
                HostInterfaces::create(&ports)
                    .map_err(|e| format!("cannot create the host interfaces: {e}"))?,
            );
            threads.push(
                host.spawn_reader(host_senders, stop.clone())
                    .map_err(|e| e.to_string())?,
            );
            tracing::info!(interfaces = ?host.names(), "host interfaces up");
            Some(host)
        } else {
            None
        };
        // With NAT on several workers, frames meet their session's shard over the mesh.
        let mut handoffs: Vec<Option<Handoff>> = match (&config.nat, config.workers) {
            (Some(_), w) if w > 1 => crate::handoff::mesh(w)
                .map_err(|e| format!("cannot create the hand-off doorbells: {e}"))?
                .into_iter()
                .map(Some)
                .collect(),
            _ => Vec::new(),
        };
        for (id, (queues, pool)) in queues.into_iter().zip(pools).enumerate() {
            let setup = WorkerSetup {
                id,
                core: config.cores.as_ref().and_then(|c| c.get(id).copied()),
                ports: ports.clone(),
                queues,
                pool,
                burst: config.burst,
                fib4: fib4.clone(),
                fib6: fib6.clone(),
                adjacencies: adjacencies.clone(),
                tunnels: tunnels.clone(),
                qsbr: qsbr.register(),
                counters: counters[id].clone(),
                control: control_tx.clone(),
                icmp_rate: config.icmp_rate,
                icmp_burst: config.icmp_burst,
                nat: nat_stages.get_mut(id).and_then(Option::take),
                host: host.clone(),
                handoff: handoffs.get_mut(id).and_then(Option::take),
                captures: captures.clone(),
                tracer: tracer.clone(),
            };
            let stop = stop.clone();
            let core = setup.core;
            let handle = std::thread::Builder::new()
                .name(format!("tern-worker-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                            tracing::warn!(worker = id, core, "could not pin worker");
                        }
                    }
                    Worker::new(setup).run(&stop);
                })
                .map_err(|e| e.to_string())?;
            threads.push(handle);
        }
        threads.push(
            std::thread::Builder::new()
                .name("tern-control".into())
                .spawn(move || control.run(control_rx))
                .map_err(|e| e.to_string())?,
        );
        if let Some(nat) = config.nat.as_ref().filter(|n| !n.checks.is_empty()) {
            threads.push(
                crate::backend_health::spawn(&nat.checks, control_tx.clone(), stop.clone())
                    .map_err(|e| e.to_string())?,
            );
        }
        let bgp = match &config.bgp {
            Some(b) => {
                let sink = Box::new(BgpSink(control_tx.clone()));
                let bgp = Arc::new(bgp_glue::Bgp::start(b.clone(), sink)?);
                threads.push(spawn_health_monitor(
                    bgp.clone(),
                    counters.clone(),
                    ports.clone(),
                    stop.clone(),
                )?);
                Some(bgp)
            }
            None => None,
        };
        let fpm = match &config.fpm {
            Some(f) => {
                let sink = Box::new(FpmSink(control_tx.clone()));
                Some(Arc::new(bgp_glue::fpm::Fpm::start(f.clone(), sink)?))
            }
            None => None,
        };
        let planes = crate::ctl::Planes {
            bgp: bgp.clone(),
            fpm: fpm.clone(),
            nat: nat_shards,
            captures: captures.clone(),
            tracer: tracer.clone(),
            port_names: config.interfaces.iter().map(|i| i.name.clone()).collect(),
        };
        let metrics = match config.metrics {
            Some(addr) => Some(crate::metrics::Server::start(
                addr,
                control_tx.clone(),
                planes.clone(),
            )?),
            None => None,
        };
        let ctl_server = if serve_ctl {
            Some(crate::ctl::Server::start(
                &config.socket,
                control_tx.clone(),
                planes,
            )?)
        } else {
            None
        };
        tracing::info!(
            workers = config.workers,
            ports = ports.len(),
            "tern is forwarding"
        );
        Ok(Router {
            stop,
            control: control_tx,
            threads,
            memory,
            ctl_server,
            metrics,
            bgp,
            fpm,
        })
    }

    /// Sends a ctl request to the control plane and waits for the answer.
    pub fn ctl(&self, words: &[&str]) -> Result<serde_json::Value, String> {
        crate::ctl::ask(&self.control, words.iter().map(|s| s.to_string()).collect())
    }

    /// Stops every thread and waits for them; the TAP devices disappear with the last fd.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // BGP first: its sessions end with a Cease and its routes leave while the control
        // plane still runs.
        if let Some(bgp) = self.bgp.take() {
            bgp.stop();
        }
        if let Some(fpm) = self.fpm.take() {
            fpm.stop();
        }
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.control.send(ControlMsg::Stop);
        if let Some(server) = self.ctl_server.take() {
            server.stop();
        }
        if let Some(server) = self.metrics.take() {
            server.stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// BGP's route changes, into the control plane's queue (one message per batch).
struct BgpSink(SyncSender<ControlMsg>);

impl bgp_glue::RouteSink for BgpSink {
    fn apply(&mut self, changes: Vec<bgp_glue::Change>) {
        let _ = self.0.send(ControlMsg::Routes(Feed::Bgp, changes));
    }
}

/// zebra's route changes (FPM), likewise.
struct FpmSink(SyncSender<ControlMsg>);

impl bgp_glue::RouteSink for FpmSink {
    fn apply(&mut self, changes: Vec<bgp_glue::Change>) {
        let _ = self.0.send(ControlMsg::Routes(Feed::Fpm, changes));
    }
}

/// How often the dataplane's health is looked at, and how long a worker may go without
/// reporting before it counts as stalled.
const HEALTH_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Consecutive looks a new health state must last before BGP hears of it (a link that
/// flaps while it comes up does not withdraw anything).
const HEALTH_SETTLE: u32 = 3;

/// Tells BGP whether tern can forward: every worker alive (its loop reported within
/// [`STALLED_AFTER`]) and every port's link up. BGP withdraws tern's announcements while it
/// cannot, so a fabric with several terns routes around a sick one.
fn spawn_health_monitor(
    bgp: Arc<bgp_glue::Bgp>,
    counters: Vec<Arc<WorkerCounters>>,
    ports: Arc<[PortInfo]>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("tern-health".into())
        .spawn(move || {
            let mut seen: Vec<(u64, std::time::Instant)> = counters
                .iter()
                .map(|c| (c.heartbeat(), std::time::Instant::now()))
                .collect();
            let mut was = true;
            let mut differing = 0;
            let mut links: Vec<bool> = vec![true; ports.len()];
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(HEALTH_EVERY);
                let now = std::time::Instant::now();
                let mut workers_ok = true;
                for (c, (beat, at)) in counters.iter().zip(seen.iter_mut()) {
                    let b = c.heartbeat();
                    if b != *beat {
                        *beat = b;
                        *at = now;
                    } else if now.duration_since(*at) > STALLED_AFTER {
                        workers_ok = false;
                    }
                }
                for (p, was_up) in ports.iter().zip(links.iter_mut()) {
                    let up = crate::io::netdev::link_up(&p.name);
                    if up != *was_up {
                        *was_up = up;
                        let state = if up { "up" } else { "down" };
                        tracing::info!(port = %p.name, %state, "link state changed");
                    }
                }
                let links_ok = links.iter().all(|&up| up);
                let healthy = workers_ok && links_ok;
                differing = if healthy != was { differing + 1 } else { 0 };
                if differing >= HEALTH_SETTLE {
                    differing = 0;
                    tracing::warn!(workers_ok, links_ok, "dataplane health changed");
                    bgp.set_healthy(healthy);
                    was = healthy;
                }
            }
        })
        .map_err(|e| e.to_string())
}
