//! A worker driven from memory, for pipeline benchmarks: frames come from a [`Generator`]
//! (pre-built frames handed out round robin, one burst per poll) and leave into a
//! discarding port. The control plane is real: routes go through the RIB into the FIB.

use std::net::Ipv4Addr;
use std::sync::Arc;

use dataplane::buf::{Frame, Pool};
use dataplane::config::{Config, StaticRoute};
use dataplane::control::Control;
use dataplane::counters::{self, WorkerCounters};
use dataplane::io::memory::{MemoryPort, NullPort};
use dataplane::io::{PortQueue, PortTx};
use dataplane::pipeline::PortInfo;
use dataplane::wire::{eth, ipv4};
use dataplane::worker::{Worker, WorkerSetup};
use ipnet::{IpNet, Ipv4Net};

/// Two memory ports: `in0` (192.0.2.1/24) receives the generated frames, `out0`
/// (203.0.113.1/24) leads to a static neighbour 203.0.113.2.
pub const TWO_PORTS: &str = r#"
[dataplane]
burst = 32
[[interface]]
name = "in0"
backend = "memory"
mac = "02:00:00:00:00:01"
addresses = ["192.0.2.1/24"]
[[interface]]
name = "out0"
backend = "memory"
mac = "02:00:00:00:00:02"
addresses = ["203.0.113.1/24"]
[[neighbor]]
interface = "out0"
address = "203.0.113.2"
mac = "02:00:00:00:00:99"
"#;

/// Hands out pre-built frames, a burst per call, round robin.
pub struct Generator {
    pub frames: Vec<Vec<u8>>,
    pub next: usize,
}

impl PortQueue for Generator {
    fn recv_burst(&mut self, pool: &mut Pool, out: &mut Vec<Frame>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(frame) = self.frames.get(self.next) else {
                break;
            };
            let Some(mut f) = pool.alloc() else { break };
            f.rx_space()[..frame.len()].copy_from_slice(frame);
            f.set_len(frame.len());
            out.push(f);
            n += 1;
            // Wrap by comparison: a `%` here was a chain of 32 dependent divisions per
            // burst, a cost of the generator that a NIC ring does not have.
            self.next += 1;
            if self.next == self.frames.len() {
                self.next = 0;
            }
        }
        n
    }
    fn send_burst(&mut self, frames: &mut Vec<Frame>, pool: &mut Pool) -> usize {
        frames.drain(..).for_each(|f| pool.free(f));
        0
    }
}

/// An Ethernet frame to MAC 02:00:00:00:00:01 carrying an IPv4 packet (id 1, TTL 64)
/// with `payload` after a 20-byte header.
pub fn ipv4_frame(proto: u8, src: Ipv4Addr, dst: Ipv4Addr, flags: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; eth::LEN + 20 + payload.len()];
    eth::write(
        &mut f,
        &[2, 0, 0, 0, 0, 1],
        &[2, 0, 0, 0, 0, 0x10],
        eth::TYPE_IPV4,
    );
    let total = (20 + payload.len()) as u16;
    ipv4::Header {
        total_len: total,
        ident: 1,
        flags_frag: flags,
        ..ipv4::Header::new(proto, src, dst)
    }
    .emit(&mut f[eth::LEN..]);
    f[eth::LEN + 20..].copy_from_slice(payload);
    f
}

/// A 64-byte UDP frame from 192.0.2.2 to `dst` (60 bytes of packet, 4 of padding), with
/// a complete UDP checksum (what an AF_XDP port checks for a partial one).
pub fn frame_to(dst: u32) -> Vec<u8> {
    let mut f = wire::testing::Udp4::new(Ipv4Addr::new(192, 0, 2, 2), 1234, dst, 80)
        .payload(&[0; 18])
        .frame(&[2, 0, 0, 0, 0, 1], &[2, 0, 0, 0, 0, 0x10]);
    f.resize(64, 0);
    f
}

/// Every prefix of `table` via the neighbour 203.0.113.2 (on the second port).
pub fn routes_via_neighbor(table: &[Ipv4Net]) -> impl Iterator<Item = StaticRoute> + '_ {
    let gw = "203.0.113.2".parse().expect("addr");
    table.iter().map(move |net| StaticRoute {
        prefix: IpNet::V4(*net),
        via: Some(gw),
        interface: None,
        tunnel: None,
    })
}

/// 4096 64-byte frames to destinations drawn from `table` (fixed seed, so every benchmark
/// that uses them sends the same frames).
pub fn frames_into(table: &[Ipv4Net]) -> Vec<Vec<u8>> {
    let mut rng = crate::data::Rng(7);
    crate::data::keys::<lpm::V4>(table, 8192, &mut rng)
        .into_iter()
        .step_by(2)
        .map(|a| frame_to(a.to_bits()))
        .collect()
}

/// The pipeline benchmark's worker: the RIS 2026 IPv4 table routed via 203.0.113.2, and
/// 4096 64-byte frames to destinations drawn from it (shared by the criterion benchmark and
/// the callgrind example, so both measure the same thing).
pub fn ris_forwarding_worker() -> BenchWorker {
    let table: Vec<Ipv4Net> = crate::data::table(crate::data::RIS_V4);
    BenchWorker::new(TWO_PORTS, routes_via_neighbor(&table), frames_into(&table))
}

/// A worker whose first port receives `frames` and whose other ports discard.
pub struct BenchWorker {
    pub worker: Worker,
    pub counters: Arc<WorkerCounters>,
    /// The worker's captures (the bench starts one to measure what a captured frame costs).
    pub captures: Arc<dataplane::capture::Captures>,
    interfaces: usize,
    /// Kept alive: the tables the worker reads belong to it.
    _control: Control,
}

impl BenchWorker {
    pub fn new(
        config: &str,
        routes: impl IntoIterator<Item = StaticRoute>,
        frames: Vec<Vec<u8>>,
    ) -> BenchWorker {
        let config = Config::parse("bench", config).expect("config");
        let mut ports: Vec<PortInfo> = config.interfaces.iter().map(PortInfo::new).collect();
        // The receiving port checks for partial checksums, as an AF_XDP port does: the
        // benchmarks measure the costlier of the two receive paths.
        if let Some(port) = ports.first_mut() {
            port.completes_partial_checksums = true;
        }
        let ports: Arc<[PortInfo]> = ports.into();
        let senders: Vec<Arc<dyn PortTx>> = ports
            .iter()
            .map(|_| Arc::new(MemoryPort::default()) as Arc<dyn PortTx>)
            .collect();
        let qsbr = lpm::Qsbr::new();
        let interfaces = ports.len() + config.tunnels.len();
        let counters = Arc::new(WorkerCounters::new(interfaces));
        let mut control = Control::new(
            &config,
            ports.clone(),
            senders,
            qsbr.clone(),
            vec![counters.clone()],
        )
        .expect("control");
        for r in routes {
            control.add_static(r).expect("route");
        }
        let (fib4, fib6, adjacencies) = control.readers();
        let (tx, _rx) = std::sync::mpsc::sync_channel(16);
        let mut queues: Vec<Box<dyn PortQueue>> = vec![Box::new(Generator { frames, next: 0 })];
        for _ in 1..ports.len() {
            queues.push(Box::new(NullPort::default()));
        }
        let captures = Arc::new(dataplane::capture::Captures::new(queues.len()));
        let worker = Worker::new(WorkerSetup {
            id: 0,
            core: None,
            ports,
            queues,
            pool: Pool::new(4096),
            burst: config.burst,
            fib4,
            fib6,
            adjacencies,
            tunnels: control.tunnels(),
            qsbr: qsbr.register(),
            counters: counters.clone(),
            control: tx,
            icmp_rate: 100,
            icmp_burst: 50,
            nat: None,
            host: None,
            handoff: None,
            captures: captures.clone(),
            tracer: Arc::new(dataplane::trace::Tracer::default()),
        });
        BenchWorker {
            worker,
            counters,
            captures,
            interfaces,
            _control: control,
        }
    }

    /// The summed counters: (event name → count, total drops, drop counters).
    pub fn totals(&self) -> counters::Totals {
        counters::sum(std::slice::from_ref(&self.counters), self.interfaces)
    }

    pub fn event(&self, name: &str) -> u64 {
        self.totals()
            .events
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Panics unless every frame so far was forwarded: a benchmark that drops is void.
    pub fn assert_no_drops(&mut self, what: &str) {
        self.worker.flush_counters();
        let t = self.totals();
        let dropped: u64 = t.drops.iter().map(|(_, v)| v).sum();
        println!(
            "{what}: forwarded {}, dropped {dropped}",
            self.event("forwarded")
        );
        assert_eq!(
            dropped,
            0,
            "{what}: {:?}",
            t.drops.iter().filter(|d| d.1 > 0).collect::<Vec<_>>()
        );
    }
}
