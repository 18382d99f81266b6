//! Packet capture (`tern ctl capture`): what a port received and sent, on every backend.
//!
//! A capture is a [`Session`] on one port. While one is on, the worker that handles the
//! port offers it each burst as received (before any stage touched it) and each burst it
//! transmits; the session keeps the frames its filter takes, copied, in a bounded
//! lock-free queue that the ctl connection which asked drains into pcap. A worker never
//! waits for it: a full queue counts the frame as dropped. With no capture on, a worker
//! pays one relaxed load per burst received and one per burst sent.

pub mod filter;
pub mod stream;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use crossbeam_queue::ArrayQueue;

pub use filter::Filter;

/// Directions, as bits.
pub const RX: u8 = 1;
pub const TX: u8 = 2;

/// Bytes kept of a frame: the largest frame tern handles.
pub const SNAPLEN: usize = crate::buf::MAX_FRAME;

/// Frames a session holds between the workers and its reader; more are dropped.
pub const QUEUE: usize = 8192;

/// One captured frame.
#[derive(Debug)]
pub struct Record {
    /// Time of the burst it came in or went out with, since the Unix epoch.
    pub nanos: u64,
    pub dir: u8,
    /// Its length on the wire (`data` is at most [`SNAPLEN`] of it).
    pub len: u32,
    pub data: Vec<u8>,
}

/// One capture: a port, its directions, a filter and how many frames are wanted.
pub struct Session {
    pub port: u16,
    dirs: u8,
    filter: Filter,
    queue: ArrayQueue<Record>,
    /// Frames still to take; the workers stop at zero.
    wanted: AtomicU64,
    pub captured: AtomicU64,
    pub dropped: AtomicU64,
}

impl Session {
    pub fn new(port: u16, dirs: u8, filter: Filter, count: Option<u64>) -> Session {
        Session {
            port,
            dirs,
            filter,
            queue: ArrayQueue::new(QUEUE),
            wanted: AtomicU64::new(count.unwrap_or(u64::MAX)),
            captured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// A burst of frames that went `dir` on the port (worker side): each the filter
    /// takes, while frames are wanted, is copied into the queue or counted as dropped.
    pub fn offer<'a>(&self, dir: u8, frames: impl Iterator<Item = &'a [u8]> + Clone) {
        if self.dirs & dir == 0 {
            return;
        }
        // Two passes, so that the shared counts change once per burst, not per frame
        // (workers capturing on one port would pass their cache lines back and forth):
        // how many frames the filter takes, then copy as many of them as are wanted.
        let matching = frames.clone().filter(|f| self.filter.matches(f)).count() as u64;
        if matching == 0 {
            return;
        }
        let mut claimed = 0;
        let _ = self.wanted.fetch_update(Relaxed, Relaxed, |w| {
            claimed = w.min(matching);
            Some(w - claimed)
        });
        let nanos = now_nanos();
        let (mut captured, mut dropped) = (0, 0);
        let chosen = frames.filter(|f| self.filter.matches(f));
        for f in chosen.take(claimed as usize) {
            let record = Record {
                nanos,
                dir,
                len: f.len() as u32,
                data: f[..f.len().min(SNAPLEN)].to_vec(),
            };
            match self.queue.push(record) {
                Ok(()) => captured += 1,
                Err(_) => dropped += 1,
            }
        }
        self.captured.fetch_add(captured, Relaxed);
        self.dropped.fetch_add(dropped, Relaxed);
    }

    /// The next captured frame (reader side).
    pub fn pop(&self) -> Option<Record> {
        self.queue.pop()
    }

    /// Whether every wanted frame has been taken (or dropped).
    pub fn complete(&self) -> bool {
        self.wanted.load(Relaxed) == 0
    }
}

/// The wall clock in nanoseconds since the Unix epoch: what captured and traced packets
/// are stamped with.
pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The router's captures: at most one session per port, which the workers look up once
/// per port and burst.
pub struct Captures {
    on: Vec<AtomicBool>,
    sessions: Vec<ArcSwapOption<Session>>,
}

impl Default for Captures {
    /// No ports, so no captures.
    fn default() -> Captures {
        Captures::new(0)
    }
}

impl Captures {
    pub fn new(ports: usize) -> Captures {
        Captures {
            on: (0..ports).map(|_| AtomicBool::new(false)).collect(),
            sessions: (0..ports).map(|_| ArcSwapOption::empty()).collect(),
        }
    }

    /// The session on `port`, if one is on: the workers' check, one relaxed load while
    /// none is.
    #[inline(always)]
    pub fn on(&self, port: usize) -> Option<Arc<Session>> {
        if !self.on.get(port)?.load(Relaxed) {
            return None;
        }
        self.sessions[port].load_full()
    }

    /// Starts `session` on its port; refused while another capture runs there.
    pub fn start(&self, session: Session) -> Result<Arc<Session>, String> {
        let port = session.port as usize;
        let slot = self
            .sessions
            .get(port)
            .ok_or_else(|| format!("no port {port}"))?;
        let session = Arc::new(session);
        let previous = slot.compare_and_swap(&None::<Arc<Session>>, Some(session.clone()));
        if previous.is_some() {
            return Err("a capture is already running on this port".into());
        }
        self.on[port].store(true, Relaxed);
        Ok(session)
    }

    /// Ends the capture on `port`; frames a worker is offering right now may still land
    /// in the session, which its reader no longer drains.
    pub fn stop(&self, port: u16) {
        if let Some(on) = self.on.get(port as usize) {
            on.store(false, Relaxed);
            self.sessions[port as usize].store(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dport: u16) -> Vec<u8> {
        ::wire::testing::Udp4::new([192, 0, 2, 2], 1000, [203, 0, 113, 2], dport)
            .frame(&[2; 6], &[4; 6])
    }

    #[test]
    fn a_session_takes_what_its_filter_and_count_allow_and_counts_the_overflow() {
        let captures = Captures::new(2);
        assert!(captures.on(0).is_none());
        let filter = Filter::parse("udp port 53").expect("filter");
        let s = captures.start(Session::new(0, RX, filter, Some(QUEUE as u64 + 10)));
        let s = s.expect("start");
        assert!(captures
            .start(Session::new(0, RX, Filter::All, None))
            .is_err());
        let on = captures.on(0).expect("on");
        let (dns, other) = (frame(53), frame(80));
        on.offer(TX, [&dns[..]].into_iter());
        assert_eq!(s.captured.load(Relaxed), 0, "TX is not captured");
        let burst = [&dns[..], &other[..]];
        for _ in 0..(QUEUE + 20) {
            on.offer(RX, burst.iter().copied());
        }
        assert_eq!(s.captured.load(Relaxed), QUEUE as u64, "the queue's worth");
        assert_eq!(
            s.dropped.load(Relaxed),
            10,
            "the rest of the count, dropped"
        );
        assert!(s.complete());
        let r = s.pop().expect("record");
        assert_eq!(
            (r.dir, r.len as usize, r.data),
            (RX, dns.len(), dns.clone())
        );
        captures.stop(0);
        assert!(captures.on(0).is_none());
        assert!(captures
            .start(Session::new(0, RX, Filter::All, None))
            .is_ok());
    }
}
