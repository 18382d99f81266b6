//! `cargo bench -p benches --bench pipeline`: ns per packet for IPv4 forwarding of 64-byte
//! frames through one worker's whole loop (rx from memory, parse, batched FIB lookup,
//! TTL + checksum, MAC rewrite, tx to a discarding port, counters, quiescent state), with
//! the RIS 2026 IPv4 table loaded and destinations drawn from it.

use std::sync::Arc;
use std::time::Duration;

use benches::data::{self, Rng};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::buf::{Frame, Pool};
use dataplane::config::{Config, StaticRoute};
use dataplane::control::Control;
use dataplane::counters::WorkerCounters;
use dataplane::io::memory::{MemoryPort, NullPort};
use dataplane::io::{PortQueue, PortTx};
use dataplane::pipeline::PortInfo;
use dataplane::wire::{eth, ipv4};
use dataplane::worker::{Worker, WorkerSetup};
use ipnet::{IpNet, Ipv4Net};

const CONFIG: &str = r#"
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

/// Hands out pre-built 64-byte frames, a burst per call, round robin.
struct Generator {
    frames: Vec<[u8; 64]>,
    next: usize,
}

impl PortQueue for Generator {
    fn recv_burst(&mut self, pool: &mut Pool, out: &mut Vec<Box<Frame>>, max: usize) -> usize {
        for _ in 0..max {
            let Some(mut f) = pool.alloc() else { break };
            f.rx_space()[..64].copy_from_slice(&self.frames[self.next]);
            f.set_len(64);
            out.push(f);
            self.next = (self.next + 1) % self.frames.len();
        }
        max
    }
    fn send_burst(&mut self, frames: &mut Vec<Box<Frame>>, pool: &mut Pool) -> usize {
        frames.drain(..).for_each(|f| pool.free(f));
        0
    }
}

fn frame_to(dst: u32) -> [u8; 64] {
    let mut f = [0u8; 64];
    eth::write(
        &mut f,
        &[2, 0, 0, 0, 0, 1],
        &[2, 0, 0, 0, 0, 0x10],
        eth::TYPE_IPV4,
    );
    ipv4::write(
        &mut f[eth::LEN..],
        0,
        46,
        1,
        0,
        64,
        ipv4::PROTO_UDP,
        "192.0.2.2".parse().expect("addr"),
        std::net::Ipv4Addr::from_bits(dst),
    );
    f[34..36].copy_from_slice(&1234u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    f[38..40].copy_from_slice(&26u16.to_be_bytes());
    f
}

fn pipeline(c: &mut Criterion) {
    let config = Config::parse("bench", CONFIG).expect("config");
    let ports: Arc<[PortInfo]> = config.interfaces.iter().map(PortInfo::new).collect();
    let senders: Vec<Arc<dyn PortTx>> = vec![
        Arc::new(MemoryPort::default()),
        Arc::new(MemoryPort::default()),
    ];
    let qsbr = lpm::Qsbr::new();
    let counters = Arc::new(WorkerCounters::new(2));
    let mut control = Control::new(
        &config,
        ports.clone(),
        senders,
        qsbr.clone(),
        vec![counters.clone()],
    )
    .expect("control");
    let table: Vec<Ipv4Net> = data::table(data::RIS_V4);
    let gw = "203.0.113.2".parse().expect("addr");
    for net in &table {
        control
            .add_static(StaticRoute {
                prefix: IpNet::V4(*net),
                via: Some(gw),
                interface: None,
            })
            .expect("route");
    }
    let mut rng = Rng(7);
    let frames: Vec<[u8; 64]> = data::v4_keys(&table, 8192, &mut rng)
        .into_iter()
        .step_by(2)
        .map(|a| frame_to(a.to_bits()))
        .collect();
    let (fib4, fib6, adjacencies) = control.readers();
    let (tx, _rx) = std::sync::mpsc::sync_channel(16);
    let mut worker = Worker::new(WorkerSetup {
        id: 0,
        core: None,
        ports,
        queues: vec![
            Box::new(Generator { frames, next: 0 }),
            Box::new(NullPort::default()),
        ],
        pool: 4096,
        burst: 32,
        fib4,
        fib6,
        adjacencies,
        qsbr: qsbr.register(),
        counters: counters.clone(),
        control: tx,
        icmp_rate: 100,
        icmp_burst: 50,
    });
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(32));
    group.bench_function("ipv4-forward-64B-burst32-ris-table", |b| {
        b.iter(|| worker.poll_once())
    });
    group.finish();
    let totals = dataplane::counters::sum(&[counters], 2);
    let forwarded = totals
        .events
        .iter()
        .find(|(k, _)| *k == "forwarded")
        .map_or(0, |(_, v)| *v);
    let dropped: u64 = totals.drops.iter().map(|(_, v)| v).sum();
    println!("forwarded {forwarded}, dropped {dropped} (every frame must be forwarded)");
    assert_eq!(dropped, 0, "{:?}", totals.drops);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    targets = pipeline
}
criterion_main!(benches);
