//! One real session, over loopback TCP, fed whatever bytes a test or a fuzzer brings.
//!
//! tern's side is the ordinary session thread ([`crate::session::Session`]); the other side
//! is scripted here: it takes tern's connection, completes the OPEN exchange so the session
//! is Established, writes the bytes, closes its sending side and reads what tern answers
//! until tern closes. The outcome is what RFC 4271 allows: tern sent a NOTIFICATION and
//! closed, or it took everything and only closed because the peer went away.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::codec::{self, Family, Notification, Open};
use crate::config::{Import, PeerConfig};
use crate::input::Event;
use crate::input::Input;
use crate::session::{Command, Session, Status};

/// How a fed session ended.
#[derive(Debug)]
pub struct Outcome {
    /// The NOTIFICATION tern sent, if it sent one.
    pub notification: Option<Notification>,
    /// UPDATEs the session decoded and passed on before the end.
    pub updates: usize,
}

const STEP: Duration = Duration::from_secs(5);

/// Establishes a session with tern (AS 65000) as AS 65001, sends `input`, and reports.
/// `Err` is a harness failure (the session never came up, or never let go), not an
/// outcome.
pub fn feed_established_session(input: &[u8]) -> Result<Outcome, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let mut config = PeerConfig::new("loopback", IpAddr::V4(Ipv4Addr::LOCALHOST), 65001, 65000);
    config.port = port;
    config.import = Import::All;
    config.families = vec![Family::Ipv4, Family::Ipv6];
    // Long: after the peer leaves, the session must wait for our Stop, not reconnect.
    config.connect_retry = Duration::from_secs(600);
    let (events_tx, events) = mpsc::channel();
    let (commands, commands_rx) = mpsc::channel();
    let session = Session {
        id: 0,
        config,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        local_as: 65000,
        events: events_tx,
        commands: commands_rx,
        status: Arc::new(Mutex::new(Status::default())),
    };
    let thread = std::thread::spawn(move || session.run());
    let result = drive(&listener, &events, input);
    let _ = commands.send(Command::Stop);
    thread
        .join()
        .map_err(|_| "the session thread panicked".to_string())?;
    result
}

fn drive(
    listener: &TcpListener,
    events: &mpsc::Receiver<Input>,
    input: &[u8],
) -> Result<Outcome, String> {
    let mut peer = accept(listener)?;
    peer.set_read_timeout(Some(STEP))
        .map_err(|e| e.to_string())?;
    let (kind, _) = read_message(&mut peer)?.ok_or("tern closed before its OPEN")?;
    if kind != codec::OPEN {
        return Err(format!("tern's first message is type {kind}, not OPEN"));
    }
    let open = Open {
        version: 4,
        asn: 65001,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        families: vec![Family::Ipv4, Family::Ipv6],
        asn4: true,
        route_refresh: true,
        graceful_restart: None,
    };
    send(&mut peer, &open.encode())?;
    send(&mut peer, &codec::keepalive())?;
    match events.recv_timeout(STEP) {
        Ok(Input::Session(Event::Up { .. })) => {}
        _ => return Err("the session did not reach Established".into()),
    }
    // The bytes may be refused half way (tern closes): a failed write is an outcome.
    let _ = peer.write_all(input);
    let _ = peer.shutdown(Shutdown::Write);
    let mut notification = None;
    loop {
        match read_message(&mut peer) {
            Ok(Some((codec::NOTIFICATION, body))) => {
                notification = Some(Notification::decode(&body))
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return Err(format!("tern neither answered nor closed: {e}")),
        }
    }
    // Established, then closed either way: the session must say it went down.
    let mut updates = 0;
    loop {
        match events.recv_timeout(STEP) {
            Ok(Input::Session(Event::Update { .. })) => updates += 1,
            Ok(Input::Session(Event::Down { .. })) => break,
            Ok(_) => {}
            Err(_) => return Err("the session never reported itself down".into()),
        }
    }
    Ok(Outcome {
        notification,
        updates,
    })
}

fn accept(listener: &TcpListener) -> Result<TcpStream, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + STEP;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(|e| e.to_string())?;
                return Ok(s);
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(format!("tern did not connect: {e}")),
        }
    }
}

fn send(peer: &mut TcpStream, message: &[u8]) -> Result<(), String> {
    peer.write_all(message).map_err(|e| e.to_string())
}

/// The next message from tern, `None` when it closed.
fn read_message(peer: &mut TcpStream) -> Result<Option<(u8, Vec<u8>)>, String> {
    let mut header = [0u8; codec::HEADER_LEN];
    if !read_full(peer, &mut header)? {
        return Ok(None);
    }
    let (kind, len) =
        codec::check_header(&header).map_err(|n| format!("tern sent a bad header: {n}"))?;
    let mut body = vec![0; len - codec::HEADER_LEN];
    if !read_full(peer, &mut body)? {
        return Err("tern closed inside a message".into());
    }
    Ok(Some((kind, body)))
}

/// Fills `buf`; `false` on a clean close before the first byte.
fn read_full(peer: &mut TcpStream, buf: &mut [u8]) -> Result<bool, String> {
    let mut got = 0;
    while got < buf.len() {
        match peer.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err("closed inside a message".into()),
            Ok(n) => got += n,
            // A reset after tern's NOTIFICATION: it closed with our bytes unread.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && got == 0 => {
                return Ok(false)
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(true)
}
