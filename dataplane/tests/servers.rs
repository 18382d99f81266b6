//! The ctl and metrics servers against bad clients: a request that never ends, a client
//! that sends a byte now and then. Neither may cost memory in proportion to what it sends
//! or delay anybody else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use dataplane::config::Config;
use dataplane::router::Router;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Servers {
    router: Option<Router>,
    socket: std::path::PathBuf,
    metrics: String,
    dir: std::path::PathBuf,
}

impl Servers {
    fn start(name: &str) -> Servers {
        let dir = std::env::temp_dir().join(format!("tern-servers-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let socket = dir.join("tern.sock");
        let port = 20_000 + (std::process::id() % 20_000) as u16 + name.len() as u16;
        let metrics = format!("127.0.0.1:{port}");
        let text = format!(
            "[control]\nsocket = \"{}\"\nmetrics = \"{metrics}\"\n\
             [[interface]]\nname = \"m0\"\nbackend = \"memory\"\nmac = \"02:00:00:00:00:01\"\n\
             addresses = [\"192.0.2.1/24\"]\n",
            socket.display()
        );
        let config = Config::parse("test", &text).expect("config");
        let router = Router::start(&config, true).expect("start");
        Servers {
            router: Some(router),
            socket,
            metrics,
            dir,
        }
    }

    fn ctl(&self) -> Result<serde_json::Value, String> {
        dataplane::ctl::request(&self.socket, &["show".into(), "counters".into()])
    }

    fn scrape(&self, method: &str) -> String {
        let mut s = TcpStream::connect(&self.metrics).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        write!(s, "{method} /metrics HTTP/1.1\r\nHost: tern\r\n\r\n").expect("write");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(r) = self.router.take() {
            r.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes up to `total` bytes of `fill` (no terminator) until the server stops taking them.
fn flood(w: &mut impl Write, total: usize) -> usize {
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        match w.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => sent += n,
        }
    }
    sent
}

#[test]
fn a_256_mib_request_is_refused_by_both_servers_without_the_memory() {
    let s = Servers::start("big");
    assert!(s.ctl().is_ok());
    let before = rss_kib();

    let mut ctl = UnixStream::connect(&s.socket).expect("connect");
    ctl.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    ctl.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let sent = flood(&mut ctl, 256 << 20);
    let mut answer = String::new();
    let _ = ctl.read_to_string(&mut answer);
    assert!(
        answer.contains("request longer than"),
        "ctl refused the request ({sent} bytes taken): {answer:?}"
    );

    let mut http = TcpStream::connect(&s.metrics).expect("connect");
    http.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    http.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = http.write_all(b"GET /metrics HTTP/1.1\r\nX-Long: ");
    let sent = flood(&mut http, 256 << 20);
    let mut answer = String::new();
    let _ = http.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "metrics refused the request ({sent} bytes taken): {answer:?}"
    );

    let grown = rss_kib().saturating_sub(before);
    assert!(grown <= 16 * 1024, "RSS grew by {grown} KiB");
    assert!(s.ctl().is_ok(), "ctl still answers");
    assert!(s.scrape("GET").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_client_sending_a_byte_at_a_time_delays_no_other_request() {
    let s = Servers::start("slow");
    let mut slow_ctl = UnixStream::connect(&s.socket).expect("connect");
    let mut slow_http = TcpStream::connect(&s.metrics).expect("connect");
    let mut ctl_ms = Vec::new();
    let mut scrape_ms = Vec::new();
    for i in 0..10 {
        // A byte every 200 ms on each slow connection, never a whole request.
        let _ = slow_ctl.write_all(b"[");
        let _ = slow_http.write_all(if i == 0 { b"G" } else { b"E" });
        let t = Instant::now();
        assert!(s.ctl().is_ok());
        ctl_ms.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        assert!(s.scrape("GET").starts_with("HTTP/1.1 200"));
        scrape_ms.push(t.elapsed().as_secs_f64() * 1e3);
        std::thread::sleep(Duration::from_millis(200));
    }
    for (what, ms) in [("ctl", &mut ctl_ms), ("scrape", &mut scrape_ms)] {
        ms.sort_by(f64::total_cmp);
        let (median, worst) = (ms[ms.len() / 2], ms[ms.len() - 1]);
        println!("{what}: median {median:.1} ms, worst {worst:.1} ms");
        assert!(median < 100.0 && worst < 500.0, "{what}: {ms:?} ms");
    }
    // The slow clients are cut off at the request deadline, with an answer saying why.
    slow_ctl
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = slow_ctl.read_to_string(&mut answer);
    assert!(answer.contains("not complete within"), "{answer:?}");
    slow_http
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut answer = String::new();
    let _ = slow_http.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
}

#[test]
fn head_gets_the_headers_of_get_and_other_methods_are_refused() {
    let s = Servers::start("head");
    let get = s.scrape("GET");
    let head = s.scrape("HEAD");
    let (get_head, get_body) = get.split_once("\r\n\r\n").expect("a GET answer");
    let (head_head, head_body) = head.split_once("\r\n\r\n").expect("a HEAD answer");
    assert!(
        head_head.starts_with("HTTP/1.1 200") && head_body.is_empty(),
        "{head}"
    );
    let length = |h: &str| {
        h.lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .map(str::to_string)
    };
    assert_eq!(length(get_head), Some(get_body.len().to_string()));
    assert!(length(head_head).is_some());
    assert!(s.scrape("POST").starts_with("HTTP/1.1 405"));
}
