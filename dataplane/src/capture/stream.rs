//! The ctl side of a capture: a request `capture PORT [rx|tx|both] [count N] [seconds S]
//! [filter EXPR]` becomes a session on the port, and the connection gets its frames as a
//! pcap stream (nanosecond timestamps, Ethernet) until the count is reached, the time is
//! up or the client goes away. An error before the stream starts is a JSON line instead;
//! a pcap stream never starts with `{`.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use super::{Captures, Filter, Session, RX, SNAPLEN, TX};

/// What a capture request asks for.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub port: u16,
    pub dirs: u8,
    pub count: Option<u64>,
    pub seconds: Option<u64>,
    pub filter: Filter,
}

impl Request {
    /// Reads the words after `capture`; `ports` names the ports in order.
    pub fn parse(words: &[String], ports: &[String]) -> Result<Request, String> {
        let mut words = words.iter().map(String::as_str);
        let name = words.next().ok_or("capture: which port?")?;
        let port = ports
            .iter()
            .position(|p| p == name)
            .ok_or_else(|| format!("capture: no port {name:?} (ports: {})", ports.join(", ")))?;
        let mut r = Request {
            port: port as u16,
            dirs: RX | TX,
            count: None,
            seconds: None,
            filter: Filter::All,
        };
        let number = |what: &str, w: Option<&str>| -> Result<u64, String> {
            let w = w.ok_or_else(|| format!("capture: {what} needs a number"))?;
            w.parse()
                .map_err(|_| format!("capture: {what} {w:?} is not a number"))
        };
        while let Some(w) = words.next() {
            match w {
                "rx" => r.dirs = RX,
                "tx" => r.dirs = TX,
                "both" => r.dirs = RX | TX,
                "count" => r.count = Some(number("count", words.next())?),
                "seconds" => r.seconds = Some(number("seconds", words.next())?),
                "filter" => r.filter = Filter::parse(words.next().unwrap_or_default())?,
                other => return Err(format!("capture: {other:?} is not understood")),
            }
        }
        Ok(r)
    }
}

/// Runs the capture `r` and streams it to `stream`. `Err` is a message for the client,
/// given before anything was written.
pub fn serve(stream: &UnixStream, captures: &Captures, r: Request) -> Result<(), String> {
    let port = r.port;
    let session = captures.start(Session::new(port, r.dirs, r.filter, r.count))?;
    tracing::info!(port, dirs = r.dirs, count = ?r.count, seconds = ?r.seconds, "capture started");
    let deadline = r.seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let result = write_pcap(stream, &session, deadline);
    captures.stop(port);
    tracing::info!(
        port,
        captured = session.captured.load(Relaxed),
        dropped = session.dropped.load(Relaxed),
        "capture ended"
    );
    if let Err(e) = result {
        tracing::debug!(port, "capture stream: {e}");
    }
    Ok(())
}

/// How long the reader waits when the queue is empty.
const IDLE: Duration = Duration::from_millis(2);

fn write_pcap(
    mut stream: &UnixStream,
    session: &Session,
    deadline: Option<Instant>,
) -> Result<(), pcap_file::PcapError> {
    let header = PcapHeader {
        snaplen: SNAPLEN as u32,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        ..Default::default()
    };
    let fd = stream.as_raw_fd();
    // The writer formats into `pending`, which goes to the socket once per batch.
    let pending = Pending::default();
    let mut out = PcapWriter::with_header(pending.clone(), header)?;
    let mut send = || -> Result<(), pcap_file::PcapError> {
        let mut bytes = pending.0.borrow_mut();
        stream
            .write_all(&bytes)
            .map_err(pcap_file::PcapError::IoError)?;
        bytes.clear();
        Ok(())
    };
    send()?;
    loop {
        let mut wrote = false;
        while let Some(r) = session.pop() {
            let ts = Duration::from_nanos(r.nanos);
            out.write_packet(&PcapPacket::new(ts, r.len, &r.data))?;
            wrote = true;
        }
        if wrote {
            send()?;
        }
        let done = session.complete() || deadline.is_some_and(|d| Instant::now() >= d);
        if done || client_gone(fd) {
            // Frames a worker pushed after the last pop still belong to the capture.
            while let Some(r) = session.pop() {
                let ts = Duration::from_nanos(r.nanos);
                out.write_packet(&PcapPacket::new(ts, r.len, &r.data))?;
            }
            return send();
        }
        if !wrote {
            std::thread::sleep(IDLE);
        }
    }
}

/// Bytes the pcap writer has formatted and the socket has not taken yet.
#[derive(Default, Clone)]
struct Pending(Rc<RefCell<Vec<u8>>>);

impl Write for Pending {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the client closed its end (it sends nothing after the request, so anything
/// readable is the end of the stream).
fn client_gone(fd: std::os::fd::RawFd) -> bool {
    let mut fd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0
}

/// The client side (`tern ctl capture`): sends `words` (the request after `capture`) to
/// the ctl socket at `path` and copies the pcap stream it answers with into `out`,
/// frame by frame, flushing each so that `-w - | tshark -r -` follows live. Returns the
/// frames written; an error answer is the server's message.
pub fn receive(path: &std::path::Path, words: &[String], out: impl Write) -> Result<u64, String> {
    use std::io::{BufRead, BufReader};
    let mut stream = UnixStream::connect(path).map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is tern running?)",
            path.display()
        )
    })?;
    let request: Vec<&str> = std::iter::once("capture")
        .chain(words.iter().map(String::as_str))
        .collect();
    writeln!(stream, "{}", serde_json::json!(request)).map_err(|e| e.to_string())?;
    let mut input = BufReader::new(&stream);
    let first = input.fill_buf().map_err(|e| e.to_string())?;
    if first.is_empty() {
        return Err("the answer ended early".into());
    }
    if first[0] == b'{' {
        let mut line = String::new();
        input.read_line(&mut line).map_err(|e| e.to_string())?;
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("bad answer: {e}"))?;
        return Err(v["error"]
            .as_str()
            .unwrap_or("unexpected answer")
            .to_string());
    }
    let mut reader = PcapReader::new(input).map_err(|e| e.to_string())?;
    let mut writer = PcapWriter::with_header(out, reader.header()).map_err(|e| e.to_string())?;
    let mut frames = 0;
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(|e| e.to_string())?;
        match writer.write_packet(&packet) {
            Ok(_) => frames += 1,
            // The reader of our output went away (`| head`): the capture ends quietly.
            Err(pcap_file::PcapError::IoError(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(frames)
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    writer.into_writer().flush().map_err(|e| e.to_string())?;
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn requests_parse_and_refuse_with_the_word() {
        let ports = words("tern0 tern1");
        let r = Request::parse(&words("tern1 rx count 5 seconds 3 filter icmp"), &ports);
        let r = r.expect("request");
        assert_eq!(
            (r.port, r.dirs, r.count, r.seconds),
            (1, RX, Some(5), Some(3))
        );
        assert_eq!(r.filter, Filter::parse("icmp").expect("filter"));
        assert_eq!(
            Request::parse(&words("tern0"), &ports).expect("r").dirs,
            RX | TX
        );
        for (bad, word) in [
            ("eth9", "eth9"),
            ("", "which port"),
            ("tern0 count", "number"),
            ("tern0 count many", "many"),
            ("tern0 sideways", "sideways"),
            ("tern0 filter vlan", "vlan"),
        ] {
            let e = Request::parse(&words(bad), &ports).expect_err(bad);
            assert!(e.contains(word), "{bad:?}: {e}");
        }
    }
}
