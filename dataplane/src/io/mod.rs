//! Packet I/O backends. A worker owns one [`PortQueue`] per port (its own TAP queue or
//! AF_XDP socket); the control thread sends its few frames (ARP requests, held packets)
//! through a [`PortTx`].

pub mod host;
pub mod memory;
pub mod netdev;
pub mod pcap;
pub mod tap;
pub mod xdp;

use crate::buf::{Frame, Pool};

/// One worker's receive/transmit queue on one port.
pub trait PortQueue: Send {
    /// Receives up to `max` frames into `out` (buffers from `pool`); returns how many.
    fn recv_burst(&mut self, pool: &mut Pool, out: &mut Vec<Frame>, max: usize) -> usize;
    /// Sends every frame of `frames` and returns the buffers to `pool`; returns how many
    /// went out (the rest are counted as tx errors by the caller).
    fn send_burst(&mut self, frames: &mut Vec<Frame>, pool: &mut Pool) -> usize;
    /// A descriptor that polls readable when frames wait, for idle sleeping.
    fn poll_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// Whether frames handed to `send_burst` still wait to leave (the loop must not sleep
    /// on them).
    fn tx_pending(&self) -> bool {
        false
    }
}

/// The control plane's handle on a port: sends single frames, reports backend details.
pub trait PortTx: Send + Sync {
    fn send(&self, frame: &[u8]) -> std::io::Result<()>;

    /// Backend-specific state for `show interfaces` (AF_XDP: mode and the kernel's drop
    /// counters).
    fn status(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
}
