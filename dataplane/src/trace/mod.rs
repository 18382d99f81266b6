//! Packet trace (`tern ctl trace add N [PORT]`, `tern ctl show trace`, `trace clear`): the
//! next N packets a port receives are followed through every stage they pass, each
//! stage's finding written down as a line, as VPP's `trace add` does.
//!
//! Asking arms a shared [`Tracer`]; a worker checks it once per burst (one relaxed load
//! while nothing is asked) and claims as many of the burst's frames as are still wanted.
//! Those frames go through the same stages as every other frame; the worker writes down
//! what each stage left in their `Meta` and, around their dispatch, what changed in its
//! counters and transmit queues: the drop reason, or where they left and as what. So a
//! trace costs the traced frames' bursts, and nothing otherwise.

pub mod describe;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde_json::{json, Value};

/// Traces kept at most; the oldest make room for new ones.
pub const KEEP: usize = 1024;

/// Packets one `trace add` may ask for.
pub const MAX_ADD: u64 = 1024;

/// One traced packet: where it came in and each stage's line.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub worker: usize,
    pub port: String,
    pub nanos: u64,
    pub steps: Vec<(&'static str, String)>,
}

impl Record {
    pub fn step(&mut self, stage: &'static str, what: String) {
        self.steps.push((stage, what));
    }

    pub fn json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|(stage, what)| json!({ "stage": stage, "what": what }))
            .collect();
        json!({
            "packet": self.id,
            "worker": self.worker,
            "port": self.port,
            "time_ns": self.nanos,
            "steps": steps,
        })
    }
}

/// The router's trace: how many packets are still wanted, from which port, and the
/// records so far.
#[derive(Default)]
pub struct Tracer {
    wanted: AtomicU64,
    /// The port index to trace, or `ANY_PORT`.
    port: AtomicU32,
    next_id: AtomicU64,
    records: Mutex<VecDeque<Record>>,
}

const ANY_PORT: u32 = u32::MAX;

impl Tracer {
    /// Asks for the next `n` packets (received on `port`, or on any port).
    pub fn add(&self, n: u64, port: Option<u16>) -> Result<(), String> {
        if n == 0 || n > MAX_ADD {
            return Err(format!("trace add: 1 to {MAX_ADD} packets"));
        }
        self.port.store(port.map_or(ANY_PORT, u32::from), Relaxed);
        self.wanted.store(n, Relaxed);
        Ok(())
    }

    /// Whether packets are wanted: the workers' per-burst check.
    #[inline(always)]
    pub fn on(&self) -> bool {
        self.wanted.load(Relaxed) != 0
    }

    /// How many of a burst of `n` frames received on `port` to trace (taken from those
    /// wanted).
    pub fn claim(&self, port: u16, n: usize) -> usize {
        let wanted_port = self.port.load(Relaxed);
        if wanted_port != ANY_PORT && wanted_port != u32::from(port) {
            return 0;
        }
        let mut claimed = 0;
        let _ = self.wanted.fetch_update(Relaxed, Relaxed, |w| {
            claimed = w.min(n as u64);
            Some(w - claimed)
        });
        claimed as usize
    }

    /// A record for a packet now arriving on `port` (named `name`) at `worker`.
    pub fn start(&self, worker: usize, name: &str) -> Record {
        Record {
            id: self.next_id.fetch_add(1, Relaxed) + 1,
            worker,
            port: name.to_string(),
            nanos: crate::capture::now_nanos(),
            steps: Vec::new(),
        }
    }

    pub fn keep(&self, records: impl IntoIterator<Item = Record>) {
        let mut kept = self.records.lock().unwrap_or_else(|e| e.into_inner());
        for r in records {
            if kept.len() == KEEP {
                kept.pop_front();
            }
            kept.push_back(r);
        }
    }

    /// The records in the order the packets came (by id), and how many are still wanted.
    pub fn show(&self) -> Value {
        let kept = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let mut records: Vec<&Record> = kept.iter().collect();
        records.sort_by_key(|r| r.id);
        let packets: Vec<Value> = records.iter().map(|r| r.json()).collect();
        json!({ "packets": packets, "pending": self.wanted.load(Relaxed) })
    }

    /// Forgets the records and stops tracing.
    pub fn clear(&self) {
        self.wanted.store(0, Relaxed);
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Answers `trace add N [PORT]`, `trace clear` and `show trace` (`ports`: the port
/// names in order); `None` for any other request.
pub fn answer(
    tracer: &Tracer,
    ports: &[String],
    words: &[String],
) -> Option<Result<Value, String>> {
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    Some(match words[..] {
        ["show", "trace"] => Ok(tracer.show()),
        ["trace", "clear"] => {
            tracer.clear();
            Ok(json!("trace cleared"))
        }
        ["trace", "add", n, ref rest @ ..] => {
            let n: u64 = match n.parse() {
                Ok(n) => n,
                Err(_) => return Some(Err(format!("trace add: {n:?} is not a number"))),
            };
            let port = match rest {
                [] => None,
                [name] => match ports.iter().position(|p| p == name) {
                    Some(i) => Some(i as u16),
                    None => return Some(Err(format!("trace add: no port {name:?}"))),
                },
                _ => return Some(Err("trace add N [PORT]".into())),
            };
            tracer
                .add(n, port)
                .map(|()| json!(format!("tracing the next {n} packets")))
        }
        ["trace", ..] => Err("trace add N [PORT] | trace clear".into()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_take_what_is_wanted_from_the_asked_port() {
        let t = Tracer::default();
        assert!(!t.on());
        t.add(5, Some(1)).expect("add");
        assert_eq!(t.claim(0, 32), 0, "another port");
        assert_eq!(t.claim(1, 3), 3);
        assert_eq!(t.claim(1, 32), 2);
        assert!(!t.on());
        assert!(t.add(0, None).is_err() && t.add(MAX_ADD + 1, None).is_err());
    }

    #[test]
    fn records_are_kept_up_to_the_limit_and_cleared() {
        let t = Tracer::default();
        let records: Vec<Record> = (0..KEEP + 5).map(|_| t.start(0, "p0")).collect();
        t.keep(records);
        let shown = t.show();
        let packets = shown["packets"].as_array().expect("list");
        assert_eq!(packets.len(), KEEP);
        assert_eq!(packets[0]["packet"], 6, "the oldest made room");
        t.clear();
        assert_eq!(t.show()["packets"].as_array().map(Vec::len), Some(0));
    }
}
