//! FRR as an alternative control plane: zebra's Forwarding Plane Manager (FPM) stream.
//!
//! zebra, loaded with `-M dplane_fpm_nl` and told `fpm address A port P`, connects to us
//! over TCP and sends every route it selects as a netlink `RTM_NEWROUTE` / `RTM_DELROUTE`
//! wrapped in an FPM frame: a 4-byte header (version 1, type 1 = netlink, the frame's total
//! length in network order) and the netlink message in host order. tern takes the main
//! table's unicast routes with gateways and hands them to the same [`RouteSink`] as BGP's
//! decisions; the dataplane installs them under their own route source.
//!
//! zebra going away does not take its routes with it (forwarding outlives the daemon).
//! When it connects again it replays its whole table; routes it has not sent again within
//! `stale_time` are then removed, as a graceful-restart helper does for a BGP peer.
//!
//! zebra must send gateways, not next-hop objects: `no fpm use-next-hop-groups` in its
//! configuration (FRR 8 defaults to objects). Not installed, and counted by reason: blackhole/unreachable/prohibit routes and routes
//! with no gateway (tern cannot name zebra's interfaces); for such a prefix any route
//! zebra gave before is removed, so tern never forwards on a route zebra replaced.

use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde_json::{json, Value};

use crate::{Change, RouteSink};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmConfig {
    /// Where zebra connects (FRR's default port is 2620).
    pub listen: SocketAddr,
    /// How long after zebra reconnects its old routes wait to be sent again.
    pub stale_time: Duration,
}

/// One route decision from zebra.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMsg {
    Add {
        prefix: IpNet,
        next_hops: crate::NextHops,
    },
    /// A delete, or a route tern cannot install (`why` says which).
    Delete {
        prefix: IpNet,
        why: Option<&'static str>,
    },
}

const FPM_VERSION: u8 = 1;
const FPM_NETLINK: u8 = 1;
const FPM_HEADER: usize = 4;

const NLMSG_HEADER: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_DONE: u16 = 3;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEXTHOP: u16 = 104;
const RTM_DELNEXTHOP: u16 = 105;
const RTMSG: usize = 12;
const RTN_UNICAST: u8 = 1;
const RT_TABLE_MAIN: u32 = 254;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
const RTA_NH_ID: u16 = 30;
/// rtnexthop: length u16, flags u8, hops u8, ifindex i32.
const RTNH: usize = 8;

/// zebra sends routes that name next-hop objects instead of gateways: tern needs
/// `no fpm use-next-hop-groups` in zebra's configuration.
const NEXT_HOP_OBJECT: &str = "next-hop object (configure zebra with no fpm use-next-hop-groups)";

/// Splits the FPM frames off the front of `buf`: each frame's netlink payload, and how many
/// bytes were used. A header that is not version 1 netlink is an error: the stream cannot
/// be resynchronised, the connection has to go.
pub fn split_frames(buf: &[u8]) -> Result<(Vec<&[u8]>, usize), String> {
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some(header) = buf.get(at..at + FPM_HEADER) {
        let (version, kind) = (header[0], header[1]);
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if version != FPM_VERSION || kind != FPM_NETLINK {
            return Err(format!(
                "FPM frame version {version} type {kind}: expected 1 and 1 (netlink)"
            ));
        }
        if len < FPM_HEADER {
            return Err(format!("FPM frame length {len} is shorter than its header"));
        }
        let Some(frame) = buf.get(at + FPM_HEADER..at + len) else {
            break;
        };
        frames.push(frame);
        at += len;
    }
    Ok((frames, at))
}

/// Decodes the netlink messages of one frame. Unusable messages are skipped and named in
/// `skipped`; a message whose lengths do not add up ends the frame with an error.
pub fn decode_netlink(
    mut payload: &[u8],
    out: &mut Vec<RouteMsg>,
    skipped: &mut Vec<&'static str>,
) -> Result<(), &'static str> {
    while !payload.is_empty() {
        let header = payload
            .get(..NLMSG_HEADER)
            .ok_or("truncated netlink header")?;
        let len = u32::from_ne_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = u16::from_ne_bytes([header[4], header[5]]);
        let body = payload
            .get(NLMSG_HEADER..len.max(NLMSG_HEADER))
            .filter(|_| len >= NLMSG_HEADER)
            .ok_or("netlink message length out of bounds")?;
        match kind {
            RTM_NEWROUTE | RTM_DELROUTE => match decode_route(kind, body)? {
                Ok(msg) => out.push(msg),
                Err(why) => skipped.push(why),
            },
            NLMSG_NOOP | NLMSG_DONE => {}
            RTM_NEWNEXTHOP | RTM_DELNEXTHOP => skipped.push(NEXT_HOP_OBJECT),
            _ => skipped.push("not a route message"),
        }
        payload = payload.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(())
}

/// One `rtmsg` and its attributes. The outer error is malformed input; the inner one a
/// route that is well formed but not for tern (another table, another family).
fn decode_route(kind: u16, body: &[u8]) -> Result<Result<RouteMsg, &'static str>, &'static str> {
    let rtm = body.get(..RTMSG).ok_or("truncated rtmsg")?;
    let (family, dst_len, mut table, rtm_type) = (rtm[0], rtm[1], u32::from(rtm[4]), rtm[7]);
    let mut dst: Option<&[u8]> = None;
    let mut next_hops = crate::NextHops::new();
    let mut object = false;
    for (kind, value) in attributes(&body[RTMSG..])? {
        match kind {
            RTA_NH_ID => object = true,
            RTA_DST => dst = Some(value),
            RTA_TABLE => table = u32_ne(value).ok_or("bad RTA_TABLE")?,
            RTA_GATEWAY => next_hops.extend(address(family, value)),
            RTA_VIA => next_hops.extend(via(value)),
            RTA_MULTIPATH => next_hops.extend(multipath(family, value)?),
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return Ok(Err("not the main table"));
    }
    let prefix = match (family, dst) {
        (AF_INET, None) => IpNet::V4(Ipv4Net::default()),
        (AF_INET6, None) => IpNet::V6(Ipv6Net::default()),
        (AF_INET | AF_INET6, Some(bytes)) => match address(family, bytes) {
            Some(addr) => IpNet::new(addr, dst_len).map_err(|_| "prefix length too long")?,
            None => return Err("RTA_DST of the wrong length"),
        },
        _ => return Ok(Err("not IPv4 or IPv6")),
    };
    let prefix = prefix.trunc();
    if kind == RTM_DELROUTE {
        return Ok(Ok(RouteMsg::Delete { prefix, why: None }));
    }
    let why = if rtm_type != RTN_UNICAST {
        Some("blackhole, unreachable or prohibit route")
    } else if object && next_hops.is_empty() {
        Some(NEXT_HOP_OBJECT)
    } else if next_hops.is_empty() {
        Some("route without a gateway")
    } else {
        None
    };
    Ok(Ok(match why {
        None => {
            next_hops.sort();
            next_hops.dedup();
            RouteMsg::Add { prefix, next_hops }
        }
        Some(_) => RouteMsg::Delete { prefix, why },
    }))
}

/// The (type, value) pairs of a run of `rtattr`s.
fn attributes(mut bytes: &[u8]) -> Result<Vec<(u16, &[u8])>, &'static str> {
    let mut out = Vec::new();
    while bytes.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        // The two high bits flag nested / network-order payloads.
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & 0x3fff;
        let value = bytes
            .get(4..len)
            .filter(|_| len >= 4)
            .ok_or("route attribute length out of bounds")?;
        out.push((kind, value));
        bytes = bytes.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// The gateways of an `RTA_MULTIPATH`: a run of `rtnexthop`s, each with its own attributes.
fn multipath(family: u8, mut bytes: &[u8]) -> Result<Vec<IpAddr>, &'static str> {
    let mut out = Vec::new();
    while bytes.len() >= RTNH {
        let len = usize::from(u16::from_ne_bytes([bytes[0], bytes[1]]));
        let nested = bytes
            .get(RTNH..len)
            .filter(|_| len >= RTNH)
            .ok_or("rtnexthop length out of bounds")?;
        for (kind, value) in attributes(nested)? {
            match kind {
                RTA_GATEWAY => out.extend(address(family, value)),
                RTA_VIA => out.extend(via(value)),
                _ => {}
            }
        }
        bytes = bytes.get(align4(len)..).unwrap_or(&[]);
    }
    Ok(out)
}

/// `RTA_VIA`: a gateway of another family (an IPv4 route over an IPv6 next hop, RFC 8950).
fn via(value: &[u8]) -> Option<IpAddr> {
    let family = u16::from_ne_bytes([*value.first()?, *value.get(1)?]);
    address(u8::try_from(family).ok()?, value.get(2..)?)
}

fn address(family: u8, bytes: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(bytes).ok()?))),
        AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(bytes).ok()?,
        ))),
        _ => None,
    }
}

fn u32_ne(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.try_into().ok()?))
}

fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// What `show fpm` prints.
#[derive(Debug, Default)]
struct Stats {
    connected: Option<SocketAddr>,
    connections: u64,
    frames: u64,
    routes_added: u64,
    routes_removed: u64,
    stale_removed: u64,
    routes: usize,
    skipped: BTreeMap<&'static str, u64>,
    errors: u64,
    last_error: Option<String>,
}

/// The listener thread and what it has seen.
pub struct Fpm {
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Fpm {
    /// Listens on `config.listen` and feeds what zebra sends to `sink`.
    pub fn start(config: FpmConfig, sink: Box<dyn RouteSink>) -> Result<Fpm, String> {
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| format!("cannot listen for FPM on {}: {e}", config.listen))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let mut feed = Feed {
            sink,
            routes: HashMap::new(),
            generation: 0,
            sweep_at: None,
            stale_time: config.stale_time,
            pending: Vec::new(),
            stats: stats.clone(),
        };
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tern-fpm".into())
            .spawn(move || feed.serve(listener, &stopping))
            .map_err(|e| e.to_string())?;
        Ok(Fpm {
            stop,
            stats,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// `show fpm`.
    pub fn show(&self) -> Value {
        let Ok(s) = self.stats.lock() else {
            return json!({});
        };
        json!({
            "connected": s.connected.map(|a| a.to_string()),
            "connections": s.connections,
            "frames": s.frames,
            "routes": s.routes,
            "routes_added": s.routes_added,
            "routes_removed": s.routes_removed,
            "stale_removed": s.stale_removed,
            "skipped": s.skipped,
            "errors": s.errors,
            "last_error": s.last_error,
        })
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

impl Drop for Fpm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How often the listener looks at its stop flag and the stale timer while idle.
const POLL: Duration = Duration::from_millis(100);
/// Changes handed to the sink in one batch at most.
const BATCH: usize = 4096;

/// zebra's routes as tern has them, and the changes not yet handed on.
struct Feed {
    sink: Box<dyn RouteSink>,
    /// Prefix → the connection generation that last sent it.
    routes: HashMap<IpNet, u64>,
    generation: u64,
    sweep_at: Option<Instant>,
    stale_time: Duration,
    pending: Vec<Change>,
    stats: Arc<Mutex<Stats>>,
}

impl Feed {
    fn serve(&mut self, listener: TcpListener, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, from)) => {
                    self.connected(from);
                    self.read(stream, stop);
                    self.stat(|s| s.connected = None);
                    tracing::warn!(%from, "FPM connection closed; zebra's routes stay until it replays them");
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.sweep_if_due();
                    std::thread::sleep(POLL);
                }
                Err(e) => {
                    self.error(format!("accept: {e}"));
                    std::thread::sleep(POLL);
                }
            }
        }
    }

    fn connected(&mut self, from: SocketAddr) {
        tracing::info!(%from, "FPM connection from zebra");
        self.generation += 1;
        // A first connection has nothing stale to sweep.
        if !self.routes.is_empty() {
            self.sweep_at = Some(Instant::now() + self.stale_time);
        }
        self.stat(|s| {
            s.connected = Some(from);
            s.connections += 1;
        });
    }

    /// Reads frames until the connection ends or we are stopped.
    fn read(&mut self, mut stream: TcpStream, stop: &AtomicBool) {
        if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(POLL)).is_err() {
            return;
        }
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        let mut chunk = vec![0u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.flush();
                    self.sweep_if_due();
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.error(format!("read: {e}"));
                    break;
                }
            }
            let used = match split_frames(&buf) {
                Ok((frames, used)) => {
                    let n = frames.len() as u64;
                    let mut msgs = Vec::new();
                    let mut skipped = Vec::new();
                    for frame in frames {
                        if let Err(e) = decode_netlink(frame, &mut msgs, &mut skipped) {
                            self.error(format!("frame dropped: {e}"));
                        }
                    }
                    self.stat(|s| {
                        s.frames += n;
                        for why in &skipped {
                            *s.skipped.entry(why).or_default() += 1;
                        }
                    });
                    msgs.into_iter().for_each(|m| self.apply(m));
                    used
                }
                Err(e) => {
                    self.error(e);
                    break;
                }
            };
            buf.drain(..used);
            if self.pending.len() >= BATCH {
                self.flush();
            }
        }
        self.flush();
    }

    fn apply(&mut self, msg: RouteMsg) {
        match msg {
            RouteMsg::Add { prefix, next_hops } => {
                self.routes.insert(prefix, self.generation);
                self.stat(|s| s.routes_added += 1);
                self.pending.push(Change::Set {
                    prefix,
                    next_hops,
                    ebgp: false,
                });
            }
            RouteMsg::Delete { prefix, why } => {
                if let Some(why) = why {
                    self.stat(|s| *s.skipped.entry(why).or_default() += 1);
                }
                if self.routes.remove(&prefix).is_some() {
                    self.stat(|s| s.routes_removed += 1);
                    self.pending.push(Change::Remove { prefix });
                }
            }
        }
    }

    /// After a reconnection's grace time, removes the routes zebra did not send again.
    fn sweep_if_due(&mut self) {
        if self.sweep_at.is_none_or(|at| Instant::now() < at) {
            return;
        }
        self.sweep_at = None;
        let current = self.generation;
        let stale: Vec<IpNet> = self
            .routes
            .iter()
            .filter(|(_, g)| **g != current)
            .map(|(p, _)| *p)
            .collect();
        for prefix in &stale {
            self.routes.remove(prefix);
            self.pending.push(Change::Remove { prefix: *prefix });
        }
        if !stale.is_empty() {
            tracing::info!(routes = stale.len(), "stale FPM routes removed");
        }
        self.stat(|s| s.stale_removed += stale.len() as u64);
        self.flush();
    }

    fn flush(&mut self) {
        let routes = self.routes.len();
        self.stat(|s| s.routes = routes);
        if !self.pending.is_empty() {
            self.sink.apply(std::mem::take(&mut self.pending));
        }
    }

    fn error(&self, e: String) {
        tracing::warn!("FPM: {e}");
        self.stat(|s| {
            s.errors += 1;
            s.last_error = Some(e);
        });
    }

    fn stat(&self, f: impl FnOnce(&mut Stats)) {
        if let Ok(mut s) = self.stats.lock() {
            f(&mut s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink route message as zebra's `dplane_fpm_nl` builds one.
    fn route_msg(
        kind: u16,
        family: u8,
        dst: &[u8],
        len: u8,
        rtm_type: u8,
        attrs: &[(u16, Vec<u8>)],
    ) -> Vec<u8> {
        let mut body = vec![family, len, 0, 0, 254, 11, 0, rtm_type, 0, 0, 0, 0];
        let mut all = vec![(RTA_DST, dst.to_vec())];
        all.extend_from_slice(attrs);
        for (t, v) in all {
            body.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(&v);
            body.resize(align4(body.len()), 0);
        }
        let mut msg = ((NLMSG_HEADER + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend_from_slice(&body);
        msg
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![1, 1];
        f.extend_from_slice(&((payload.len() + 4) as u16).to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn decode(payload: &[u8]) -> (Vec<RouteMsg>, Vec<&'static str>) {
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        decode_netlink(payload, &mut out, &mut skipped).expect("well formed");
        (out, skipped)
    }

    #[test]
    fn unicast_multipath_and_delete() {
        let gw = |a: [u8; 4]| (RTA_GATEWAY, a.to_vec());
        let single = route_msg(
            RTM_NEWROUTE,
            AF_INET,
            &[198, 18, 5, 0],
            24,
            1,
            &[gw([192, 0, 2, 2])],
        );
        // Two rtnexthops, each with a gateway attribute.
        let mut mp = Vec::new();
        for last in [3u8, 2] {
            mp.extend_from_slice(&16u16.to_ne_bytes());
            mp.extend_from_slice(&[0, 0, 2, 0, 0, 0]);
            mp.extend_from_slice(&8u16.to_ne_bytes());
            mp.extend_from_slice(&RTA_GATEWAY.to_ne_bytes());
            mp.extend_from_slice(&[192, 0, 2, last]);
        }
        let multi = route_msg(
            RTM_NEWROUTE,
            AF_INET,
            &[198, 18, 6, 0],
            23,
            1,
            &[(RTA_MULTIPATH, mp)],
        );
        let v6 = route_msg(
            RTM_NEWROUTE,
            AF_INET6,
            &"2001:db8:5::".parse::<Ipv6Addr>().unwrap().octets(),
            48,
            1,
            &[(
                RTA_GATEWAY,
                "2001:db8:a::2"
                    .parse::<Ipv6Addr>()
                    .unwrap()
                    .octets()
                    .to_vec(),
            )],
        );
        let del = route_msg(RTM_DELROUTE, AF_INET, &[198, 18, 5, 0], 24, 1, &[]);
        let mut stream = Vec::new();
        for m in [&single, &multi, &v6, &del] {
            stream.extend(frame(m));
        }
        // Frames split at any byte boundary come out whole.
        let (frames, used) = split_frames(&stream[..stream.len() - 1]).expect("frames");
        assert_eq!((frames.len(), used), (3, stream.len() - frame(&del).len()));
        let (frames, _) = split_frames(&stream).expect("frames");
        let mut msgs = Vec::new();
        for f in frames {
            msgs.extend(decode(f).0);
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            msgs,
            vec![
                RouteMsg::Add {
                    prefix: "198.18.5.0/24".parse().unwrap(),
                    next_hops: smallvec::smallvec![ip("192.0.2.2")]
                },
                RouteMsg::Add {
                    prefix: "198.18.6.0/23".parse().unwrap(),
                    next_hops: smallvec::smallvec![ip("192.0.2.2"), ip("192.0.2.3")]
                },
                RouteMsg::Add {
                    prefix: "2001:db8:5::/48".parse().unwrap(),
                    next_hops: smallvec::smallvec![ip("2001:db8:a::2")]
                },
                RouteMsg::Delete {
                    prefix: "198.18.5.0/24".parse().unwrap(),
                    why: None
                },
            ]
        );
    }

    #[test]
    fn routes_tern_cannot_use_are_named() {
        let blackhole = route_msg(RTM_NEWROUTE, AF_INET, &[198, 18, 7, 0], 24, 6, &[]);
        let (msgs, _) = decode(&blackhole);
        assert_eq!(
            msgs,
            vec![RouteMsg::Delete {
                prefix: "198.18.7.0/24".parse().unwrap(),
                why: Some("blackhole, unreachable or prohibit route")
            }]
        );
        let other_table = route_msg(
            RTM_NEWROUTE,
            AF_INET,
            &[198, 18, 7, 0],
            24,
            1,
            &[
                (RTA_TABLE, 100u32.to_ne_bytes().to_vec()),
                (RTA_GATEWAY, vec![192, 0, 2, 2]),
            ],
        );
        assert_eq!(decode(&other_table), (vec![], vec!["not the main table"]));
        let object = route_msg(
            RTM_NEWROUTE,
            AF_INET,
            &[198, 18, 7, 0],
            24,
            1,
            &[(RTA_NH_ID, 7u32.to_ne_bytes().to_vec())],
        );
        let (msgs, _) = decode(&object);
        assert_eq!(
            msgs,
            vec![RouteMsg::Delete {
                prefix: "198.18.7.0/24".parse().unwrap(),
                why: Some(NEXT_HOP_OBJECT)
            }]
        );
        let mut neigh = route_msg(RTM_NEWROUTE, AF_INET, &[198, 18, 7, 0], 24, 1, &[]);
        neigh[4] = 28; // RTM_NEWNEIGH
        assert_eq!(decode(&neigh), (vec![], vec!["not a route message"]));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(split_frames(&[2, 1, 0, 8, 0, 0, 0, 0]).is_err());
        assert!(split_frames(&[1, 1, 0, 2]).is_err());
        let good = route_msg(
            RTM_NEWROUTE,
            AF_INET,
            &[198, 18, 5, 0],
            24,
            1,
            &[(RTA_GATEWAY, vec![192, 0, 2, 2])],
        );
        // Every truncation and every single-byte corruption: an answer, never a panic.
        for cut in 0..good.len() {
            let (mut out, mut skipped) = (Vec::new(), Vec::new());
            let _ = decode_netlink(&good[..cut], &mut out, &mut skipped);
        }
        for i in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let (mut out, mut skipped) = (Vec::new(), Vec::new());
                let _ = decode_netlink(&bad, &mut out, &mut skipped);
            }
        }
        let mut long = good.clone();
        long[0] = 200;
        assert!(decode_netlink(&long, &mut Vec::new(), &mut Vec::new()).is_err());
        let mut bad_len = good.clone();
        bad_len[NLMSG_HEADER + 1] = 40; // rtm_dst_len 40 for IPv4
        assert_eq!(
            decode_netlink(&bad_len, &mut Vec::new(), &mut Vec::new()),
            Err("prefix length too long")
        );
    }
}
