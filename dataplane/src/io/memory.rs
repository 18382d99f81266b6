//! The memory backend: frames in, frames out, for tests, benchmarks and fuzzing.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::{PortQueue, PortTx};
use crate::buf::{Frame, Pool};

/// Both ends of a memory port: what tests inject and what tern sent.
#[derive(Default, Clone)]
pub struct MemoryPort {
    pub rx: Arc<Mutex<VecDeque<Vec<u8>>>>,
    pub tx: Arc<Mutex<VecDeque<Vec<u8>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryPort {
    pub fn inject(&self, frame: &[u8]) {
        lock(&self.rx).push_back(frame.to_vec());
    }
    pub fn take_sent(&self) -> Vec<Vec<u8>> {
        lock(&self.tx).drain(..).collect()
    }
}

impl PortQueue for MemoryPort {
    fn recv_burst(&mut self, pool: &mut Pool, out: &mut Vec<Frame>, max: usize) -> usize {
        let mut rx = lock(&self.rx);
        let mut n = 0;
        while n < max {
            let Some(bytes) = rx.front() else { break };
            let Some(mut frame) = pool.alloc() else { break };
            let len = bytes.len().min(frame.rx_space().len());
            frame.rx_space()[..len].copy_from_slice(&bytes[..len]);
            frame.set_len(len);
            rx.pop_front();
            out.push(frame);
            n += 1;
        }
        n
    }

    fn send_burst(&mut self, frames: &mut Vec<Frame>, pool: &mut Pool) -> usize {
        let mut tx = lock(&self.tx);
        let n = frames.len();
        for f in frames.drain(..) {
            tx.push_back(f.data().to_vec());
            pool.free(f);
        }
        n
    }
}

impl PortTx for MemoryPort {
    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        lock(&self.tx).push_back(frame.to_vec());
        Ok(())
    }
}

/// A port that receives nothing and discards what it is given (benchmarks).
#[derive(Default)]
pub struct NullPort {
    pub sent: u64,
}

impl PortQueue for NullPort {
    fn recv_burst(&mut self, _: &mut Pool, _: &mut Vec<Frame>, _: usize) -> usize {
        0
    }

    fn send_burst(&mut self, frames: &mut Vec<Frame>, pool: &mut Pool) -> usize {
        let n = frames.len();
        self.sent += n as u64;
        for f in frames.drain(..) {
            pool.free(f);
        }
        n
    }
}
