//! Health checks of DNAT backends (`check = "tcp"` on a `[[nat.forward]]`).
//!
//! A thread connects to every checked backend through tern's own kernel TCP stack: the host
//! interfaces carry the SYN out of tern's port and the answer back, as for BGP. After
//! `check_fall` failed connects in a row a backend is taken out of its frontend, after
//! `check_rise` good ones it is put back, by the same `nat backend F B down|up` request an
//! operator sends: sessions stay on their backend (conntrack), new flows go to the backends
//! that are up, and Maglev moves only the flows that had the changed backend.
//!
//! Connects run one after another, each bounded by `check_timeout_ms` (≤ the interval);
//! each backend is checked again one interval (its forward's) after its last check ended,
//! so with n dead backends due at once the last waits up to n timeouts for its turn.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::BackendCheck;
use crate::control_msg::ControlMsg;

/// What the checker knows of one backend.
struct Backend {
    frontend: String,
    endpoint: nat::Endpoint,
    up: bool,
    /// Results in a row that disagree with `up`.
    against: u32,
    fall: u32,
    rise: u32,
    timeout: Duration,
    interval: Duration,
    /// When the next check is due.
    due: Instant,
}

impl Backend {
    /// Counts one result; returns the new state when it changes.
    fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.up {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let needed = if self.up { self.fall } else { self.rise };
        if self.against < needed {
            return None;
        }
        self.up = ok;
        self.against = 0;
        Some(ok)
    }
}

fn connects(endpoint: nat::Endpoint, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::from(endpoint.addr), endpoint.port));
    TcpStream::connect_timeout(&addr, timeout).is_ok()
}

/// Starts the checker for `checks`; it ends when `stop` is set.
pub fn spawn(
    checks: &[BackendCheck],
    control: SyncSender<ControlMsg>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let start = Instant::now();
    let mut backends: Vec<Backend> = checks
        .iter()
        .flat_map(|c| {
            c.backends.iter().map(move |&endpoint| Backend {
                frontend: c.frontend.clone(),
                endpoint,
                up: true,
                against: 0,
                fall: c.fall,
                rise: c.rise,
                timeout: c.timeout,
                interval: c.interval,
                due: start,
            })
        })
        .collect();
    std::thread::Builder::new()
        .name("tern-backend-health".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for b in backends.iter_mut().filter(|b| b.due <= Instant::now()) {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let ok = connects(b.endpoint, b.timeout);
                    // Each backend on its own forward's interval, counted from this check.
                    b.due = Instant::now() + b.interval;
                    if let Some(up) = b.record(ok) {
                        apply(&control, b, up);
                    }
                }
                // Sleep until the next check is due, in short steps so a stop is seen.
                let next = backends.iter().map(|b| b.due).min();
                let next = next.unwrap_or_else(|| Instant::now() + STEP);
                while Instant::now() < next && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(next.saturating_duration_since(Instant::now()).min(STEP));
                }
            }
        })
}

/// How often a sleeping checker looks at the stop flag.
const STEP: Duration = Duration::from_millis(20);

/// Takes a backend out or puts it back, as `tern ctl nat backend F B down|up` does.
fn apply(control: &SyncSender<ControlMsg>, b: &Backend, up: bool) {
    let state = if up { "up" } else { "down" };
    tracing::warn!(frontend = %b.frontend, backend = %b.endpoint, state, "backend health changed");
    let words = [
        "nat",
        "backend",
        &b.frontend,
        &b.endpoint.to_string(),
        state,
    ]
    .map(str::to_string)
    .to_vec();
    if let Err(e) = crate::ctl::ask(control, words) {
        tracing::warn!(error = %e, "could not apply a backend health change");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(fall: u32, rise: u32) -> Backend {
        Backend {
            frontend: "web".into(),
            endpoint: nat::Endpoint {
                addr: 0xc000_020a,
                port: 80,
            },
            up: true,
            against: 0,
            fall,
            rise,
            timeout: Duration::from_millis(10),
            interval: Duration::from_millis(100),
            due: Instant::now(),
        }
    }

    #[test]
    fn fall_and_rise_need_results_in_a_row() {
        let mut b = backend(3, 2);
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), None);
        // A success in between starts the count again.
        assert_eq!(b.record(true), None);
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), None);
        assert_eq!(b.record(false), Some(false));
        assert_eq!(b.record(false), None, "already down");
        assert_eq!(b.record(true), None);
        assert_eq!(b.record(true), Some(true));
        assert!(b.up);
    }

    #[test]
    fn a_refused_connect_fails_the_check() {
        // Nothing listens on a port of a listener just closed, on the loopback.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a loopback port");
        let closed = nat::Endpoint {
            addr: u32::from(Ipv4Addr::LOCALHOST),
            port,
        };
        assert!(!connects(closed, Duration::from_millis(200)));
        let open = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        let listening = nat::Endpoint {
            addr: u32::from(Ipv4Addr::LOCALHOST),
            port: open.local_addr().expect("its address").port(),
        };
        assert!(connects(listening, Duration::from_millis(200)));
    }
}
