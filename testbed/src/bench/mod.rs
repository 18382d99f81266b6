//! The forwarding throughput harness behind `tern-bench`: generator, sink, DUT modes on the
//! same wires, trials interleaved, medians reported. See `harness` for the topology and
//! what is measured.

pub mod floor;
pub mod gen;
pub mod harness;
pub mod report;

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use self::harness::{Dut, Mode, Wires};
use self::report::Trial;

/// Destinations for `flows` flows: inside the test prefix, or random hosts of random
/// table prefixes (so lookups walk the whole table).
pub fn destinations(flows: usize, table: Option<&[ipnet::Ipv4Net]>, seed: u64) -> Vec<Ipv4Addr> {
    let mut x = seed | 1;
    let mut next = move || {
        // xorshift64*: reproducible, good enough to spread addresses.
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    (0..flows)
        .map(|i| match table {
            Some(t) if !t.is_empty() => {
                let p = t[(next() % t.len() as u64) as usize];
                let host_bits = 32 - p.prefix_len() as u32;
                let host = if host_bits == 0 {
                    0
                } else {
                    (next() as u32) & (u32::MAX >> (32 - host_bits))
                };
                Ipv4Addr::from(u32::from(p.network()) | host)
            }
            _ => Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + (i as u32 % 32_768)),
        })
        .collect()
}

/// One running DUT: measures generator runs against it.
pub struct Session<'a> {
    pub wires: &'a Wires,
    pub exe: &'a Path,
    pub dut: Dut,
    pub destinations: &'a Path,
}

impl<'a> Session<'a> {
    /// Starts `mode` and warms it up (neighbour resolution, caches) with a short, slow run.
    pub fn start(
        wires: &'a Wires,
        exe: &'a Path,
        mode: Mode,
        destinations: &'a Path,
    ) -> Result<Session<'a>, String> {
        let dut = Dut::start(wires, mode, exe)?;
        let s = Session {
            wires,
            exe,
            dut,
            destinations,
        };
        harness::generate(
            wires,
            exe,
            s.dut.gen_if,
            destinations,
            60,
            20_000,
            Duration::from_millis(500),
        )?;
        std::thread::sleep(Duration::from_millis(200));
        Ok(s)
    }

    /// One measured generator run.
    pub fn trial(
        &self,
        series: &str,
        round: usize,
        frame_len: usize,
        rate: u64,
        seconds: f64,
    ) -> Result<Trial, String> {
        let before = self.dut.snapshot(self.wires);
        let tern_before = self.dut.tern_tx();
        let offered = harness::generate(
            self.wires,
            self.exe,
            self.dut.gen_if,
            self.destinations,
            frame_len,
            rate,
            Duration::from_secs_f64(seconds),
        )?;
        // Let queues drain before the second snapshot.
        std::thread::sleep(Duration::from_millis(300));
        let after = self.dut.snapshot(self.wires);
        let tern_tx = self.dut.tern_tx().zip(tern_before).map(|(a, b)| a - b);
        Ok(Trial {
            mode: self.dut.mode,
            series: series.to_string(),
            round,
            frame_len,
            rate,
            seconds,
            offered,
            forwarded: after.forwarded.saturating_sub(before.forwarded),
            delivered: after.delivered.saturating_sub(before.delivered),
            cpu_ns: after.cpu_ns.saturating_sub(before.cpu_ns),
            tern_tx,
        })
    }

    pub fn stop(self) {
        self.dut.stop(self.wires);
    }
}

/// A one-line progress bar on stderr.
pub struct Progress {
    pub done: usize,
    pub total: usize,
}

impl Progress {
    pub fn step(&mut self, what: &str) {
        self.done += 1;
        let width = 30;
        let filled = width * self.done / self.total.max(1);
        eprint!(
            "\r[{}{}] {}/{} {what:<48}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.done,
            self.total
        );
        let _ = std::io::stderr().flush();
        if self.done == self.total {
            eprintln!();
        }
    }
}
