//! One BGP session per configured peer, on its own thread: the RFC 4271 §8 state machine
//! (Idle → Connect/Active → OpenSent → OpenConfirm → Established), its timers, connection
//! collisions (§6.8), and the messages of one TCP connection.
//!
//! The thread decodes UPDATEs and hands them to the speaker over an unbounded channel, so
//! however long the RIB takes over a full table, this thread keeps reading (the peer's
//! keepalives are seen) and keeps sending its own keepalives on time.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::codec::{self, err, Family, Notification, Open, Update};
use crate::config::PeerConfig;
use crate::input::{Event, Input};
use crate::rib::PeerId;

/// RFC 4271 §8: the hold time while waiting for the peer's OPEN ("a large value").
const OPEN_HOLD: Duration = Duration::from_secs(240);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait before looking at commands again.
const TICK: Duration = Duration::from_millis(50);

/// From the speaker (and the listener) to a session.
pub enum Command {
    /// A connection the peer opened to us.
    Incoming(TcpStream),
    /// Announce these prefixes (next hop self), then End-of-RIB for each family named.
    Announce(Vec<IpNet>, Vec<Family>),
    Withdraw(Vec<IpNet>),
    /// End the session with this NOTIFICATION and start over (reset, max-prefix).
    Close(Notification),
    /// Send a ROUTE-REFRESH for every family.
    Refresh,
    /// End the session (Cease: peer de-configured) and the thread.
    Stop,
}

/// What `show bgp neighbors` reports; written by the session, read by the speaker.
#[derive(Debug, Clone)]
pub struct Status {
    pub state: &'static str,
    pub since: Instant,
    pub remote_id: Option<std::net::Ipv4Addr>,
    pub hold_time: u16,
    pub local: Option<IpAddr>,
    pub messages_in: u64,
    pub messages_out: u64,
    pub updates_in: u64,
    /// When the latest UPDATE was read (decoded and handed to the speaker).
    pub last_update: Option<Instant>,
    pub keepalives_in: u64,
    pub keepalives_out: u64,
    pub notifications_in: u64,
    pub notifications_out: u64,
    pub treat_as_withdraw: u64,
    pub attributes_discarded: u64,
    pub established_count: u64,
    pub last_error: Option<String>,
}

impl Default for Status {
    fn default() -> Status {
        Status {
            state: "Idle",
            since: Instant::now(),
            remote_id: None,
            hold_time: 0,
            local: None,
            messages_in: 0,
            messages_out: 0,
            updates_in: 0,
            last_update: None,
            keepalives_in: 0,
            keepalives_out: 0,
            notifications_in: 0,
            notifications_out: 0,
            treat_as_withdraw: 0,
            attributes_discarded: 0,
            established_count: 0,
            last_error: None,
        }
    }
}

pub(crate) struct Session {
    pub id: PeerId,
    pub config: PeerConfig,
    pub router_id: std::net::Ipv4Addr,
    pub local_as: u32,
    /// The speaker's input, which session events join.
    pub events: Sender<Input>,
    pub commands: Receiver<Command>,
    pub status: Arc<Mutex<Status>>,
}

/// How a connection ended.
enum End {
    /// Start over (after the connect-retry time for an outbound peer).
    Retry,
    /// Start over at once on this connection (collision resolved in its favour).
    Switch(TcpStream),
    Stop,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

enum Read_ {
    Message(u8, Vec<u8>),
    Nothing,
}

impl Conn {
    fn new(stream: TcpStream) -> std::io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TICK))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(Conn {
            stream,
            buf: vec![0; 1 << 17],
            start: 0,
            end: 0,
        })
    }

    /// The next whole message, reading for at most one tick; `Err` with a NOTIFICATION to
    /// send (framing errors) or `None` in it when the connection failed.
    fn next(&mut self) -> Result<Read_, Option<Notification>> {
        loop {
            if self.end - self.start >= codec::HEADER_LEN {
                let mut h = [0u8; codec::HEADER_LEN];
                h.copy_from_slice(&self.buf[self.start..self.start + codec::HEADER_LEN]);
                let (kind, len) = codec::check_header(&h).map_err(Some)?;
                if self.end - self.start >= len {
                    let body = self.buf[self.start + codec::HEADER_LEN..self.start + len].to_vec();
                    self.start += len;
                    return Ok(Read_::Message(kind, body));
                }
            }
            if self.start > 0 && self.buf.len() - self.end < codec::MAX_LEN {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(None),
                Ok(n) => self.end += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(Read_::Nothing)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(None),
            }
        }
    }

    fn send(&mut self, message: &[u8]) -> bool {
        self.stream.write_all(message).is_ok()
    }
}

impl Session {
    pub fn run(mut self) {
        let mut next_connect = Instant::now();
        let mut switch_to = None;
        loop {
            let stream = match switch_to.take() {
                Some(s) => s,
                None => match self.wait_for_connection(&mut next_connect) {
                    Some(s) => s,
                    None => return,
                },
            };
            match self.run_connection(stream) {
                End::Retry => {
                    next_connect = Instant::now() + self.config.connect_retry;
                    self.set_state("Idle");
                }
                End::Switch(s) => switch_to = Some(s),
                End::Stop => return,
            }
        }
    }

    fn set_state(&self, state: &'static str) {
        if let Ok(mut s) = self.status.lock() {
            if s.state != state {
                s.state = state;
                s.since = Instant::now();
            }
        }
    }

    fn with_status(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Idle/Connect/Active: connects (unless passive) when the retry timer allows, and
    /// takes the peer's connection whenever it comes.
    fn wait_for_connection(&mut self, next_connect: &mut Instant) -> Option<TcpStream> {
        loop {
            if !self.config.passive && Instant::now() >= *next_connect {
                self.set_state("Connect");
                let to = SocketAddr::new(self.config.address, self.config.port);
                match TcpStream::connect_timeout(&to, CONNECT_TIMEOUT) {
                    Ok(s) => return Some(s),
                    Err(e) => {
                        self.with_status(|s| s.last_error = Some(format!("connect: {e}")));
                        *next_connect = Instant::now() + self.config.connect_retry;
                    }
                }
            }
            self.set_state(if self.config.passive {
                "Active"
            } else {
                "Connect"
            });
            match self.commands.recv_timeout(TICK * 4) {
                Ok(Command::Incoming(s)) => return Some(s),
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return None,
                Ok(Command::Close(_)) => *next_connect = Instant::now(),
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn our_open(&self) -> Open {
        Open {
            version: 4,
            asn: self.local_as,
            hold_time: self.config.hold_time,
            router_id: self.router_id,
            families: self.config.families.clone(),
            asn4: true,
            route_refresh: true,
            // As a graceful-restart helper: no families, restart time 0 (RFC 4724 §3).
            graceful_restart: self.config.graceful_restart.then(Default::default),
        }
    }

    fn notify(&self, conn: &mut Conn, n: &Notification) {
        conn.send(&n.encode());
        self.with_status(|s| {
            s.notifications_out += 1;
            s.messages_out += 1;
            s.last_error = Some(format!("sent {n}"));
        });
        let _ = conn.stream.shutdown(Shutdown::Both);
    }

    /// OPEN checks beyond the syntax (RFC 4271 §6.2).
    fn check_open(&self, open: &Open) -> Result<(), Notification> {
        if open.asn != self.config.remote_as {
            return Err(Notification::new(err::OPEN, err::BAD_PEER_AS, &[]));
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(Notification::new(err::OPEN, err::UNACCEPTABLE_HOLD, &[]));
        }
        let id = open.router_id;
        let ibgp = self.config.remote_as == self.local_as;
        if id.is_unspecified() || id.is_multicast() || (ibgp && id == self.router_id) {
            return Err(Notification::new(err::OPEN, err::BAD_BGP_ID, &[]));
        }
        Ok(())
    }

    fn run_connection(&mut self, stream: TcpStream) -> End {
        let outbound = stream
            .peer_addr()
            .map(|a| a.port() == self.config.port && !self.config.passive)
            .unwrap_or(false);
        // Accepted on the dual-stack listener, an IPv4 session's local address is
        // IPv4-mapped (::ffff:a.b.c.d); the next hop we announce must be the IPv4 address.
        let local = stream.local_addr().map(|a| a.ip().to_canonical()).ok();
        let Ok(mut conn) = Conn::new(stream) else {
            return End::Retry;
        };
        let ebgp = self.config.remote_as != self.local_as;
        if !conn.send(&self.our_open().encode()) {
            return End::Retry;
        }
        self.with_status(|s| {
            s.messages_out += 1;
            s.local = local;
        });
        self.set_state("OpenSent");
        let mut hold = OPEN_HOLD;
        let mut keepalive = Duration::MAX;
        let mut last_in = Instant::now();
        let mut last_out = Instant::now();
        let mut peer_open: Option<Open> = None;
        let mut established = false;
        let mut pending_incoming: Option<TcpStream> = None;
        let mut ctx = codec::Context { asn4: false, ebgp };
        let id = self.id;
        let end = loop {
            // Commands first: they are few, and a Stop must not wait behind a table.
            while let Ok(cmd) = self.commands.try_recv() {
                match cmd {
                    Command::Incoming(s) => self.collision(
                        &mut conn,
                        s,
                        outbound,
                        established,
                        &peer_open,
                        &mut pending_incoming,
                    ),
                    Command::Announce(nets, eor) if established => {
                        self.announce(&mut conn, &nets, &eor, local, ebgp, &peer_open);
                        last_out = Instant::now();
                    }
                    Command::Withdraw(nets) if established => {
                        for f in [Family::Ipv4, Family::Ipv6] {
                            for m in codec::withdraw(&of_family(&nets, f)) {
                                conn.send(&m);
                                self.with_status(|s| s.messages_out += 1);
                            }
                        }
                    }
                    Command::Refresh if established => {
                        for f in &self.config.families {
                            conn.send(&codec::route_refresh(*f));
                        }
                    }
                    Command::Close(n) => {
                        self.notify(&mut conn, &n);
                        return self.ended(established, false, End::Retry);
                    }
                    Command::Stop => {
                        self.notify(
                            &mut conn,
                            &Notification::new(err::CEASE, err::PEER_DECONFIGURED, &[]),
                        );
                        return self.ended(established, false, End::Stop);
                    }
                    _ => {}
                }
            }
            if let Some(s) = pending_incoming.take() {
                break End::Switch(s);
            }
            let now = Instant::now();
            if now.duration_since(last_in) >= hold {
                self.notify(&mut conn, &Notification::new(err::HOLD_TIMER, 0, &[]));
                break End::Retry;
            }
            if established && now.duration_since(last_out) >= keepalive {
                if !conn.send(&codec::keepalive()) {
                    self.with_status(|s| s.last_error = Some("connection lost".into()));
                    return self.ended(true, true, End::Retry);
                }
                last_out = now;
                self.with_status(|s| {
                    s.keepalives_out += 1;
                    s.messages_out += 1;
                });
            }
            let (kind, body) = match conn.next() {
                Ok(Read_::Nothing) => continue,
                Ok(Read_::Message(k, b)) => (k, b),
                Err(Some(n)) => {
                    self.notify(&mut conn, &n);
                    break End::Retry;
                }
                Err(None) => {
                    self.with_status(|s| s.last_error = Some("connection closed by peer".into()));
                    // A TCP failure: the peer may be restarting gracefully.
                    return self.ended(established, true, End::Retry);
                }
            };
            last_in = Instant::now();
            self.with_status(|s| s.messages_in += 1);
            match (kind, established, peer_open.is_some()) {
                (codec::NOTIFICATION, _, _) => {
                    let n = Notification::decode(&body);
                    self.with_status(|s| {
                        s.notifications_in += 1;
                        s.last_error = Some(format!("received {n}"));
                    });
                    break End::Retry;
                }
                (codec::OPEN, false, false) => {
                    let open =
                        match Open::decode(&body).and_then(|o| self.check_open(&o).map(|_| o)) {
                            Ok(o) => o,
                            Err(n) => {
                                self.notify(&mut conn, &n);
                                break End::Retry;
                            }
                        };
                    let negotiated = self.config.hold_time.min(open.hold_time);
                    hold = if negotiated == 0 {
                        Duration::MAX
                    } else {
                        Duration::from_secs(negotiated.into())
                    };
                    keepalive = if negotiated == 0 {
                        Duration::MAX
                    } else {
                        Duration::from_secs((negotiated / 3).max(1).into())
                    };
                    ctx.asn4 = open.asn4;
                    self.with_status(|s| {
                        s.remote_id = Some(open.router_id);
                        s.hold_time = negotiated;
                    });
                    peer_open = Some(open);
                    conn.send(&codec::keepalive());
                    last_out = Instant::now();
                    self.set_state("OpenConfirm");
                }
                (codec::KEEPALIVE, false, true) => {
                    established = true;
                    self.set_state("Established");
                    self.with_status(|s| {
                        s.keepalives_in += 1;
                        s.established_count += 1;
                        s.last_error = None;
                    });
                    let Some(open) = peer_open.clone() else {
                        break End::Retry;
                    };
                    let families = self
                        .config
                        .families
                        .iter()
                        .filter(|f| {
                            open.families.contains(f)
                                || (open.families.is_empty() && **f == Family::Ipv4)
                        })
                        .copied()
                        .collect();
                    let up = Event::Up {
                        peer: id,
                        open,
                        families,
                    };
                    if self.events.send(Input::Session(up)).is_err() {
                        return End::Stop;
                    }
                }
                (codec::KEEPALIVE, true, _) => self.with_status(|s| s.keepalives_in += 1),
                (codec::UPDATE, true, _) => match Update::decode(&body, ctx) {
                    Ok(update) => {
                        self.with_status(|s| {
                            s.updates_in += 1;
                            s.last_update = Some(Instant::now());
                            s.treat_as_withdraw += u64::from(update.treat_as_withdraw.is_some());
                            s.attributes_discarded += update.discarded.len() as u64;
                        });
                        if self
                            .events
                            .send(Input::Session(Event::Update { peer: id, update }))
                            .is_err()
                        {
                            return End::Stop;
                        }
                    }
                    Err(n) => {
                        self.notify(&mut conn, &n);
                        break End::Retry;
                    }
                },
                (codec::ROUTE_REFRESH, true, _) => {
                    let _ = self
                        .events
                        .send(Input::Session(Event::RefreshRequested { peer: id }));
                }
                // RFC 6608: the FSM error subcode names the state the message came in.
                (_, established, open_seen) => {
                    let sub = if established {
                        3
                    } else if open_seen {
                        2
                    } else {
                        1
                    };
                    self.notify(&mut conn, &Notification::new(err::FSM, sub, &[]));
                    break End::Retry;
                }
            }
        };
        let _ = conn.stream.shutdown(Shutdown::Both);
        // Replaced by the peer's new connection while established: it restarted.
        let graceful = matches!(end, End::Switch(_));
        self.ended(established, graceful, end)
    }

    /// Reports the session down to the speaker (if it was up) and passes `end` through.
    fn ended(&self, established: bool, graceful: bool, end: End) -> End {
        if established {
            let _ = self.events.send(Input::Session(Event::Down {
                peer: self.id,
                graceful,
            }));
        }
        self.set_state("Idle");
        end
    }

    /// A second connection from the peer while one is open (RFC 4271 §6.8). When the
    /// current connection must give way, the new one is left in `pending`.
    fn collision(
        &self,
        conn: &mut Conn,
        incoming: TcpStream,
        outbound: bool,
        established: bool,
        peer_open: &Option<Open>,
        pending: &mut Option<TcpStream>,
    ) {
        let cease = Notification::new(err::CEASE, err::COLLISION, &[]).encode();
        let reject = |mut s: TcpStream| {
            let _ = s.write_all(&cease);
            let _ = s.shutdown(Shutdown::Both);
        };
        let keep_new = match (established, peer_open) {
            // A peer that can restart gracefully reconnecting: it restarted (RFC 4724 §4.2).
            (true, Some(o)) => o.graceful_restart.is_some() && self.config.graceful_restart,
            (true, None) => false,
            // Our identifier lower: the connection the peer opened wins.
            (false, Some(o)) => outbound && u32::from(self.router_id) < u32::from(o.router_id),
            // No OPEN yet: a connection we opened loses to the peer's if we are passive-only,
            // otherwise keep waiting for the OPEN to decide; the peer will retry.
            (false, None) => !outbound,
        };
        if keep_new {
            if !established {
                self.notify(conn, &Notification::new(err::CEASE, err::COLLISION, &[]));
            } else {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
            *pending = Some(incoming);
        } else {
            reject(incoming);
        }
    }

    fn announce(
        &self,
        conn: &mut Conn,
        nets: &[IpNet],
        eor: &[Family],
        local: Option<IpAddr>,
        ebgp: bool,
        peer_open: &Option<Open>,
    ) {
        let asn4 = peer_open.as_ref().is_some_and(|o| o.asn4);
        for f in [Family::Ipv4, Family::Ipv6] {
            let of = of_family(nets, f);
            if of.is_empty() {
                continue;
            }
            let next_hop = match (f, local, self.config.next_hop_v6) {
                (Family::Ipv6, _, Some(v6)) => IpAddr::V6(v6),
                (Family::Ipv6, Some(IpAddr::V6(a)), _) => IpAddr::V6(a),
                (Family::Ipv4, Some(IpAddr::V4(a)), _) => IpAddr::V4(a),
                _ => continue,
            };
            let a = codec::Announce {
                local_as: self.local_as,
                ebgp,
                asn4,
                next_hop,
            };
            for m in codec::announce(&of, &a) {
                conn.send(&m);
                self.with_status(|s| s.messages_out += 1);
            }
        }
        for f in eor {
            conn.send(&codec::end_of_rib(*f));
        }
    }
}

/// The prefixes of `nets` in `family` (an UPDATE carries one family).
fn of_family(nets: &[IpNet], family: Family) -> Vec<IpNet> {
    nets.iter()
        .filter(|n| Family::of(n) == family)
        .copied()
        .collect()
}
