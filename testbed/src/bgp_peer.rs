//! A scripted BGP speaker for load tests: it connects from a test namespace, brings the
//! session up, then sends whatever UPDATEs the test built (bgp-glue's encoders) as fast as
//! TCP takes them. A reader thread watches what the other side sends: the KEEPALIVE gaps
//! (is the router still keeping the session alive under load?) and any NOTIFICATION.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bgp_glue::codec::{self, Family, Notification, Open};

use crate::Netns;

const KEEPALIVE: u8 = 4;
const NOTIFICATION: u8 = 3;
const OPEN: u8 = 1;

/// What the reader saw from the other side.
#[derive(Debug, Default, Clone)]
pub struct Heard {
    pub keepalives: u64,
    pub updates: u64,
    /// The longest time without a message from the other side (any message keeps a
    /// session alive), up to now.
    pub max_gap: Duration,
    last: Option<Instant>,
    pub notification: Option<String>,
    pub closed: bool,
}

pub struct Peer {
    writer: Arc<Mutex<TcpStream>>,
    heard: Arc<Mutex<Heard>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub hold_time: u16,
}

/// Reads one whole message: (type, bytes).
fn read_message(stream: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut header = [0u8; 19];
    stream
        .read_exact(&mut header)
        .map_err(|e| format!("read: {e}"))?;
    let (kind, len) = codec::check_header(&header).map_err(|n| format!("bad header: {n}"))?;
    let mut message = header.to_vec();
    message.resize(len, 0);
    stream
        .read_exact(&mut message[19..])
        .map_err(|e| format!("read: {e}"))?;
    Ok((kind, message))
}

impl Peer {
    /// Connects from inside `ns` to `remote`, exchanges OPENs (IPv4 and IPv6 unicast,
    /// 4-octet AS `asn`, `router_id`, `hold_time`) and KEEPALIVEs; returns once Established.
    pub fn establish(
        ns: &Netns,
        remote: SocketAddr,
        asn: u32,
        router_id: Ipv4Addr,
        hold_time: u16,
    ) -> Result<Peer, String> {
        // The socket is made inside `ns`; the source address is the kernel's choice (the
        // primary address of the link towards `remote`).
        let mut stream = ns.run_inside(|| {
            TcpStream::connect_timeout(&remote, Duration::from_secs(5))
                .map_err(|e| format!("connect to {remote}: {e}"))
        })??;
        let _ = stream.set_nodelay(true);
        let open = Open {
            version: 4,
            asn,
            hold_time,
            router_id,
            families: vec![Family::Ipv4, Family::Ipv6],
            asn4: true,
            route_refresh: false,
            graceful_restart: None,
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&open.encode())
            .map_err(|e| e.to_string())?;
        let (kind, message) = read_message(&mut stream)?;
        if kind != OPEN {
            return Err(format!("expected OPEN, got type {kind}"));
        }
        let theirs = Open::decode(&message[19..]).map_err(|n| format!("their OPEN: {n}"))?;
        let hold_time = hold_time.min(theirs.hold_time);
        stream
            .write_all(&codec::keepalive())
            .map_err(|e| e.to_string())?;
        let (kind, message) = read_message(&mut stream)?;
        if kind != KEEPALIVE {
            let why = if kind == NOTIFICATION {
                Notification::decode(&message[19..]).to_string()
            } else {
                format!("type {kind}")
            };
            return Err(format!("expected KEEPALIVE, got {why}"));
        }
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let _ = reader.set_read_timeout(Some(Duration::from_millis(200)));
        let writer = Arc::new(Mutex::new(stream));
        let heard = Arc::new(Mutex::new(Heard::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            spawn_reader(reader, heard.clone(), stop.clone()),
            spawn_keepalives(writer.clone(), hold_time, stop.clone()),
        ];
        Ok(Peer {
            writer,
            heard,
            stop,
            threads,
            hold_time,
        })
    }

    /// Sends `messages` back to back, in writes of about 64 KiB.
    pub fn send(&self, messages: &[Vec<u8>]) -> Result<(), String> {
        let mut chunk = Vec::with_capacity(1 << 16);
        for m in messages {
            chunk.extend_from_slice(m);
            if chunk.len() >= 1 << 16 {
                self.write(&chunk)?;
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            self.write(&chunk)?;
        }
        Ok(())
    }

    fn write(&self, bytes: &[u8]) -> Result<(), String> {
        let mut w = self.writer.lock().map_err(|_| "writer poisoned")?;
        w.write_all(bytes).map_err(|e| format!("write: {e}"))
    }

    pub fn heard(&self) -> Heard {
        let mut h = self.heard.lock().map(|h| h.clone()).unwrap_or_default();
        if let Some(last) = h.last {
            h.max_gap = h.max_gap.max(last.elapsed());
        }
        h
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(w) = self.writer.lock() {
            let _ = w.shutdown(std::net::Shutdown::Both);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn spawn_reader(
    mut stream: TcpStream,
    heard: Arc<Mutex<Heard>>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut last = Instant::now();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            match stream.read(&mut chunk) {
                Ok(0) => {
                    if let Ok(mut h) = heard.lock() {
                        h.closed = true;
                    }
                    return;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(_) => return,
            }
            // Whole messages at the front of `buf`.
            while buf.len() >= 19 {
                let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
                if len < 19 || buf.len() < len {
                    break;
                }
                let kind = buf[18];
                let now = Instant::now();
                if let Ok(mut h) = heard.lock() {
                    h.max_gap = h.max_gap.max(now - last);
                    h.last = Some(now);
                    match kind {
                        KEEPALIVE => h.keepalives += 1,
                        2 => h.updates += 1,
                        NOTIFICATION => {
                            h.notification = Some(Notification::decode(&buf[19..len]).to_string())
                        }
                        _ => {}
                    }
                }
                last = now;
                buf.drain(..len);
            }
        }
    })
}

/// Our own KEEPALIVEs every hold/3 (the UPDATEs we send also count for the other side).
fn spawn_keepalives(
    writer: Arc<Mutex<TcpStream>>,
    hold_time: u16,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let every = Duration::from_secs(u64::from(hold_time.max(3)) / 3);
        let mut next = Instant::now() + every;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
            if Instant::now() >= next {
                next += every;
                if let Ok(mut w) = writer.lock() {
                    let _ = w.write_all(&codec::keepalive());
                }
            }
        }
    })
}
