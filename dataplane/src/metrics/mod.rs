//! Prometheus metrics over HTTP (`[control] metrics = "ADDR:PORT"`, `GET /metrics`).
//!
//! Every scrape asks the same sources `tern ctl` does (`show counters`, `show fib`,
//! `show bgp neighbors`, `show fpm`) and renders the text exposition format (version
//! 0.0.4). Names are an interface like the ctl counter names: `tern_` prefix, `_total` on
//! counters, labels for interface, reason, family, source and peer.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::control_msg::ControlMsg;
use crate::ctl::Planes;

mod families;

use families::{bgp, counters, fib, fpm, nat, Metrics};

pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(
        addr: SocketAddr,
        control: SyncSender<ControlMsg>,
        planes: Planes,
    ) -> Result<Server, String> {
        let listener =
            TcpListener::bind(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Blocking accept, as the ctl server: `stop` wakes it with a connection of its own.
        // Each connection is served on its own thread (`serve`: bounded in number, size
        // and time), so a slow client delays no other scrape.
        let slots = crate::serve::Slots::default();
        let thread = std::thread::Builder::new()
            .name("tern-metrics".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (control, planes) = (control.clone(), planes.clone());
                    crate::serve::spawn_or_refuse(
                        &slots,
                        "tern-metrics-conn",
                        stream,
                        move |s| serve(s, &control, &planes),
                        |s| {
                            respond(
                                &s,
                                "503 Service Unavailable",
                                "too many connections\n",
                                true,
                            )
                        },
                    );
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(Server {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// One HTTP/1.1 exchange, then the connection closes (`Connection: close`): Prometheus
/// scrapes are seconds apart, so keeping connections open would only hold threads.
fn serve(mut stream: TcpStream, control: &SyncSender<ControlMsg>, planes: &Planes) {
    use crate::serve::{read_request, Request, WRITE_TIMEOUT};
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let refusal = match read_request(&mut stream, b"\r\n\r\n") {
        Request::Complete(head) => return answer(&stream, &head, control, planes),
        Request::TooLarge => ("413 Content Too Large", "request head too large\n"),
        Request::TimedOut => ("408 Request Timeout", "request not sent in time\n"),
        Request::Closed => return,
    };
    respond(&stream, refusal.0, refusal.1, true);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    crate::serve::linger(&mut stream);
}

/// Answers a complete request head.
fn answer(stream: &TcpStream, head: &[u8], control: &SyncSender<ControlMsg>, planes: &Planes) {
    let line = String::from_utf8_lossy(head);
    let words: Vec<&str> = line
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    match words.as_slice() {
        [method @ ("GET" | "HEAD"), "/metrics", version] if version.starts_with("HTTP/1.") => {
            respond(stream, "200 OK", &render(control, planes), *method == "GET")
        }
        [method @ ("GET" | "HEAD"), _, _] => {
            respond(stream, "404 Not Found", "try /metrics\n", *method == "GET")
        }
        [_, _, _] => respond(stream, "405 Method Not Allowed", "GET or HEAD\n", true),
        _ => respond(stream, "400 Bad Request", "not an HTTP/1.1 request\n", true),
    }
}

/// Writes a whole answer: the body only with `with_body` (a HEAD answer has the length of
/// the body it leaves out).
fn respond(stream: &TcpStream, status: &str, body: &str, with_body: bool) {
    let mut w = stream;
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let _ = write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    if with_body {
        let _ = w.write_all(body.as_bytes());
    }
}

fn ask(control: &SyncSender<ControlMsg>, planes: &Planes, words: &[&str]) -> Option<Value> {
    let words = words.iter().map(|w| w.to_string()).collect();
    crate::ctl::route(control, planes, words).ok()
}

/// The exposition text for one scrape.
fn render(control: &SyncSender<ControlMsg>, planes: &Planes) -> String {
    let mut m = Metrics::default();
    if let Some(c) = ask(control, planes, &["show", "counters"]) {
        counters(&mut m, &c);
    }
    if let Some(f) = ask(control, planes, &["show", "fib"]) {
        fib(&mut m, &f);
    }
    if planes.bgp.is_some() {
        if let Some(n) = ask(control, planes, &["show", "bgp", "neighbors"]) {
            bgp(&mut m, &n);
        }
    }
    if planes.fpm.is_some() {
        if let Some(f) = ask(control, planes, &["show", "fpm"]) {
            fpm(&mut m, &f);
        }
    }
    // Without a [nat] section both questions get an error: no NAT families.
    if let Some(summary) = ask(control, planes, &["show", "conntrack", "summary"]) {
        let rules = ask(control, planes, &["show", "nat"]).unwrap_or_default();
        nat(&mut m, &summary, &rules);
    }
    m.text
}
