//! What the ctl and metrics servers share: bounds on what one client can cost.
//!
//! Each connection is served on a thread of its own, at most [`MAX_CONNECTIONS`] at once
//! (the next are told they are over the limit and closed). A request must arrive whole
//! within [`REQUEST_DEADLINE`] and [`MAX_REQUEST`] bytes, whatever pace the client keeps,
//! and an answer is abandoned when the client stops reading for [`WRITE_TIMEOUT`]. So a
//! client that sends slowly, sends too much or never reads holds its own thread only, for
//! a bounded time, and never memory in proportion to what it sends.

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connections served at once, per server.
pub const MAX_CONNECTIONS: usize = 16;
/// The largest request line (ctl) or request head (HTTP).
pub const MAX_REQUEST: usize = 64 * 1024;
/// How long a client has to send its whole request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// How long an answer waits for a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// The bytes up to and including the terminator.
    Complete(Vec<u8>),
    /// More than [`MAX_REQUEST`] bytes without the terminator.
    TooLarge,
    /// The deadline passed first.
    TimedOut,
    /// The client closed (or failed) before the terminator.
    Closed,
}

/// A stream whose reads can be given a timeout: the ctl server's unix sockets and the
/// metrics server's TCP connections.
pub trait Stream: Read {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Stream for std::os::unix::net::UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::os::unix::net::UnixStream::set_read_timeout(self, timeout)
    }
}

impl Stream for std::net::TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        std::net::TcpStream::set_read_timeout(self, timeout)
    }
}

/// Reads until `terminator` (b"\n" for ctl, b"\r\n\r\n" for an HTTP head), within the
/// size limit and the deadline (the time left is the read timeout of each read, so a byte
/// now and then does not extend it).
pub fn read_request(stream: &mut impl Stream, terminator: &[u8]) -> Request {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Request::TimedOut;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Request::Closed,
            Ok(n) => {
                let searched_from = request.len().saturating_sub(terminator.len() - 1);
                request.extend_from_slice(&chunk[..n]);
                let found = request[searched_from..]
                    .windows(terminator.len())
                    .position(|w| w == terminator);
                if let Some(at) = found {
                    request.truncate(searched_from + at + terminator.len());
                    return Request::Complete(request);
                }
                if request.len() > MAX_REQUEST {
                    return Request::TooLarge;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Request::TimedOut
            }
            Err(_) => return Request::Closed,
        }
    }
}

/// After an answer that refused a request the client may still be sending: read and
/// discard what comes for a moment (bounded in bytes and time) before the connection
/// closes, so closing on unread bytes does not reset it under the answer (TCP).
pub fn linger(stream: &mut impl Stream) {
    const LINGER: Duration = Duration::from_millis(500);
    const DISCARD: usize = 1 << 20;
    let until = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < DISCARD {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

/// A server's count of connections being served.
#[derive(Clone, Default)]
pub struct Slots(Arc<AtomicUsize>);

/// One connection's place among [`MAX_CONNECTIONS`]; given back when dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Slots {
    /// A place for one more connection, unless [`MAX_CONNECTIONS`] are being served.
    pub fn take(&self) -> Option<Slot> {
        let taken = self.0.fetch_add(1, Ordering::AcqRel);
        if taken >= MAX_CONNECTIONS {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Slot(self.0.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one connection on a thread of its own when a slot is free; otherwise runs
/// `refuse` on the accepting thread (a short answer, then the connection closes).
pub fn spawn_or_refuse<S: Send + 'static>(
    slots: &Slots,
    name: &str,
    stream: S,
    serve: impl FnOnce(S) + Send + 'static,
    refuse: impl FnOnce(S),
) {
    let Some(slot) = slots.take() else {
        return refuse(stream);
    };
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _slot = slot;
            serve(stream);
        });
    if let Err(e) = spawned {
        tracing::warn!("{name}: cannot start a thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out `chunk` bytes at a time.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    impl Stream for Trickle<'_> {
        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
    }

    fn read(bytes: &[u8], terminator: &[u8]) -> Request {
        read_request(&mut Trickle(bytes, 4096), terminator)
    }

    #[test]
    fn requests_end_at_their_terminator_and_stay_under_the_limit() {
        assert_eq!(
            read(b"[\"show\"]\nrest", b"\n"),
            Request::Complete(b"[\"show\"]\n".to_vec())
        );
        assert_eq!(
            read(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody", b"\r\n\r\n"),
            Request::Complete(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec())
        );
        assert_eq!(read(b"no end", b"\n"), Request::Closed);
        let big = vec![b'x'; MAX_REQUEST + 5000];
        assert_eq!(read(&big, b"\n"), Request::TooLarge);
    }

    #[test]
    fn a_terminator_split_across_reads_is_found() {
        let mut t = Trickle(b"GET /metrics HTTP/1.1\r\n\r\n", 1);
        assert_eq!(
            read_request(&mut t, b"\r\n\r\n"),
            Request::Complete(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec())
        );
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let slots = Slots::default();
        let taken: Vec<Slot> = (0..MAX_CONNECTIONS).filter_map(|_| slots.take()).collect();
        assert_eq!(taken.len(), MAX_CONNECTIONS);
        assert!(slots.take().is_none());
        drop(taken);
        assert!(slots.take().is_some());
    }
}
