//! BGP for tern: sessions with real routers (RFC 4271 with 4-octet AS numbers, MP-BGP for
//! IPv4 and IPv6 unicast, route refresh, graceful-restart helper, RFC 7606 error handling,
//! RFC 8212 default deny), a RIB with the standard decision process and multipath, and
//! tern's own announcements.
//!
//! The crate knows nothing of the dataplane: it hands route changes, in batches, to a
//! [`RouteSink`] the dataplane implements. Threads: one per session (reads, decodes,
//! keeps the timers), one listener, and the speaker that owns the RIB (see `speaker`).
//!
//! Sessions run over the kernel's TCP: tern's dataplane hands the kernel the traffic for
//! its own addresses through host interfaces (`dataplane::io::host`).

pub mod codec;
pub mod config;
pub mod fpm;
mod input;
pub mod loopback;
pub mod mrt;
pub mod rib;
mod seed;
pub mod session;
mod speaker;

use std::net::{Ipv6Addr, SocketAddr, TcpListener};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use codec::Family;
pub use config::{BgpConfig, Import, PeerConfig, PrefixRule};
use input::Input;
pub use rib::{Change, NextHops};
use speaker::Speaker;

/// Where the RIB's decisions go: the dataplane's FIB.
pub trait RouteSink: Send + 'static {
    /// Applies one batch of changes, in order.
    fn apply(&mut self, changes: Vec<Change>);
}

/// A running BGP speaker.
pub struct Bgp {
    input: Sender<Input>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Bgp {
    /// Starts the listener (when configured), a session per peer and the speaker.
    pub fn start(config: BgpConfig, sink: Box<dyn RouteSink>) -> Result<Bgp, String> {
        let listener = match config.listen_port {
            Some(port) => {
                let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
                Some(
                    TcpListener::bind(addr)
                        .map_err(|e| format!("cannot listen for BGP on port {port}: {e}"))?,
                )
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel();
        let peers = config.peers.clone();
        let mut speaker = Speaker::new(config, sink, tx.clone());
        for p in peers {
            speaker.add_peer(p)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("bgp-speaker".into())
            .spawn(move || speaker.run(rx, listener, stop))
            .map_err(|e| e.to_string())?;
        Ok(Bgp {
            input: tx,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Answers a `tern ctl` request (`show bgp …`, `bgp …`).
    pub fn ctl(&self, words: &[String]) -> Result<serde_json::Value, String> {
        let (reply, answer) = mpsc::channel();
        self.input
            .send(Input::Ctl {
                words: words.to_vec(),
                reply,
            })
            .map_err(|_| "BGP is not running".to_string())?;
        answer
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "BGP did not answer".to_string())?
    }

    /// Tells the speaker whether the dataplane can forward: announcements are withdrawn
    /// while it cannot.
    pub fn set_healthy(&self, healthy: bool) {
        let _ = self.input.send(Input::Healthy(healthy));
    }

    /// Ends every session (Cease) and withdraws every BGP route from the sink; waits for
    /// the threads. Later calls do nothing.
    pub fn stop(&self) {
        let _ = self.input.send(Input::Stop);
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Bgp {
    fn drop(&mut self) {
        self.stop();
    }
}
