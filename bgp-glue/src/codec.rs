//! BGP-4 messages on the wire (RFC 4271), with 4-octet AS numbers (RFC 6793), MP-BGP for
//! IPv4 and IPv6 unicast (RFC 4760) and the revised error handling of RFC 7606.
//!
//! Decoding never panics and never trusts a length: every malformed message maps either to
//! the NOTIFICATION the RFCs prescribe (the session ends) or, for UPDATE attribute errors
//! RFC 7606 allows to be contained, to treat-as-withdraw or attribute-discard.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub const HEADER_LEN: usize = 19;
pub const MAX_LEN: usize = 4096;
pub const AS_TRANS: u16 = 23456;

pub const OPEN: u8 = 1;
pub const UPDATE: u8 = 2;
pub const NOTIFICATION: u8 = 3;
pub const KEEPALIVE: u8 = 4;
pub const ROUTE_REFRESH: u8 = 5;

pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

/// NOTIFICATION error codes and the subcodes used here (RFC 4271 §4.5, RFC 4486).
pub mod err {
    pub const HEADER: u8 = 1;
    pub const NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_LENGTH: u8 = 2;
    pub const BAD_TYPE: u8 = 3;

    pub const OPEN: u8 = 2;
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_ID: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL: u8 = 4;
    pub const UNACCEPTABLE_HOLD: u8 = 6;

    pub const UPDATE: u8 = 3;
    pub const MALFORMED_ATTRIBUTES: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN: u8 = 2;
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const INVALID_NETWORK: u8 = 10;

    pub const HOLD_TIMER: u8 = 4;
    pub const FSM: u8 = 5;

    pub const CEASE: u8 = 6;
    pub const MAX_PREFIXES: u8 = 1;
    pub const ADMIN_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMIN_RESET: u8 = 4;
    pub const COLLISION: u8 = 7;
}

/// A NOTIFICATION: sent when we end a session, received when the peer does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: &[u8]) -> Notification {
        Notification {
            code,
            subcode,
            data: data.to_vec(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut m = header(NOTIFICATION);
        m.push(self.code);
        m.push(self.subcode);
        m.extend_from_slice(&self.data);
        finish(m)
    }

    pub fn decode(body: &[u8]) -> Notification {
        Notification {
            code: body.first().copied().unwrap_or(0),
            subcode: body.get(1).copied().unwrap_or(0),
            data: body.get(2..).unwrap_or_default().to_vec(),
        }
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match (self.code, self.subcode) {
            (1, 1) => "message header: connection not synchronized",
            (1, 2) => "message header: bad message length",
            (1, 3) => "message header: bad message type",
            (1, _) => "message header error",
            (2, 1) => "OPEN: unsupported version number",
            (2, 2) => "OPEN: bad peer AS",
            (2, 3) => "OPEN: bad BGP identifier",
            (2, 4) => "OPEN: unsupported optional parameter",
            (2, 6) => "OPEN: unacceptable hold time",
            (2, 7) => "OPEN: unsupported capability",
            (2, _) => "OPEN message error",
            (3, 1) => "UPDATE: malformed attribute list",
            (3, 2) => "UPDATE: unrecognized well-known attribute",
            (3, 9) => "UPDATE: optional attribute error",
            (3, 10) => "UPDATE: invalid network field",
            (3, _) => "UPDATE message error",
            (4, _) => "hold timer expired",
            (5, _) => "finite state machine error",
            (6, 1) => "cease: maximum number of prefixes reached",
            (6, 2) => "cease: administrative shutdown",
            (6, 3) => "cease: peer de-configured",
            (6, 4) => "cease: administrative reset",
            (6, 5) => "cease: connection rejected",
            (6, 6) => "cease: other configuration change",
            (6, 7) => "cease: connection collision resolution",
            (6, 8) => "cease: out of resources",
            (6, 9) => "cease: hard reset",
            (6, _) => "cease",
            _ => "unknown error",
        };
        write!(f, "{}/{} ({name})", self.code, self.subcode)
    }
}

fn header(kind: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&[0xff; 16]);
    m.extend_from_slice(&[0, 0, kind]);
    m
}

fn finish(mut m: Vec<u8>) -> Vec<u8> {
    let len = m.len() as u16;
    m[16..18].copy_from_slice(&len.to_be_bytes());
    m
}

pub fn keepalive() -> Vec<u8> {
    finish(header(KEEPALIVE))
}

/// Checks a message header (RFC 4271 §6.1): marker, length bounds per type, known type.
/// Returns the type and the whole message length.
pub fn check_header(h: &[u8; HEADER_LEN]) -> Result<(u8, usize), Notification> {
    if h[..16] != [0xff; 16] {
        return Err(Notification::new(err::HEADER, err::NOT_SYNCHRONIZED, &[]));
    }
    let len = u16::from_be_bytes([h[16], h[17]]) as usize;
    let kind = h[18];
    let min = match kind {
        OPEN => 29,
        UPDATE => 23,
        NOTIFICATION => 21,
        KEEPALIVE => 19,
        ROUTE_REFRESH => 23,
        _ => return Err(Notification::new(err::HEADER, err::BAD_TYPE, &[kind])),
    };
    let bad = len < min
        || len > MAX_LEN
        || (kind == KEEPALIVE && len != 19)
        || (kind == ROUTE_REFRESH && len != 23);
    if bad {
        return Err(Notification::new(
            err::HEADER,
            err::BAD_LENGTH,
            &(len as u16).to_be_bytes(),
        ));
    }
    Ok((kind, len))
}

/// An address family we speak: IPv4 or IPv6 unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4 => AFI_IPV4,
            Family::Ipv6 => AFI_IPV6,
        }
    }

    fn from_afi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (AFI_IPV4, SAFI_UNICAST) => Some(Family::Ipv4),
            (AFI_IPV6, SAFI_UNICAST) => Some(Family::Ipv6),
            _ => None,
        }
    }

    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::Ipv4,
            IpNet::V6(_) => Family::Ipv6,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4-unicast",
            Family::Ipv6 => "ipv6-unicast",
        }
    }
}

/// The graceful restart capability (RFC 4724 §3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    /// The peer restarted and kept our routes (R bit).
    pub restarting: bool,
    pub restart_time: u16,
    /// Families whose forwarding state the peer keeps across its restart (F bit per family).
    pub families: Vec<(Family, bool)>,
}

/// What an OPEN says, capabilities included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The AS: from the 4-octet AS capability when present, else the 2-octet field.
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub families: Vec<Family>,
    pub asn4: bool,
    pub route_refresh: bool,
    pub graceful_restart: Option<GracefulRestart>,
}

const CAP_MP: u8 = 1;
const CAP_ROUTE_REFRESH: u8 = 2;
const CAP_GRACEFUL_RESTART: u8 = 64;
const CAP_ASN4: u8 = 65;

impl Open {
    pub fn encode(&self) -> Vec<u8> {
        let mut caps = Vec::new();
        for f in &self.families {
            caps.extend_from_slice(&[CAP_MP, 4]);
            caps.extend_from_slice(&f.afi().to_be_bytes());
            caps.extend_from_slice(&[0, SAFI_UNICAST]);
        }
        if self.route_refresh {
            caps.extend_from_slice(&[CAP_ROUTE_REFRESH, 0]);
        }
        if let Some(gr) = &self.graceful_restart {
            let flags: u16 = if gr.restarting { 0x8000 } else { 0 };
            caps.extend_from_slice(&[CAP_GRACEFUL_RESTART, 2 + 4 * gr.families.len() as u8]);
            caps.extend_from_slice(&(flags | (gr.restart_time & 0x0fff)).to_be_bytes());
            for (f, forwarding) in &gr.families {
                caps.extend_from_slice(&f.afi().to_be_bytes());
                caps.extend_from_slice(&[SAFI_UNICAST, if *forwarding { 0x80 } else { 0 }]);
            }
        }
        caps.extend_from_slice(&[CAP_ASN4, 4]);
        caps.extend_from_slice(&self.asn.to_be_bytes());
        let mut m = header(OPEN);
        m.push(4);
        let two = u16::try_from(self.asn).unwrap_or(AS_TRANS);
        m.extend_from_slice(&two.to_be_bytes());
        m.extend_from_slice(&self.hold_time.to_be_bytes());
        m.extend_from_slice(&self.router_id.octets());
        // One capabilities parameter (type 2) holding them all.
        m.push(caps.len() as u8 + 2);
        m.push(2);
        m.push(caps.len() as u8);
        m.extend_from_slice(&caps);
        finish(m)
    }

    /// Parses an OPEN body (after the header). Semantic checks against the configuration
    /// (peer AS, hold time, identifier) are the session's.
    pub fn decode(body: &[u8]) -> Result<Open, Notification> {
        let malformed = || Notification::new(err::OPEN, 0, &[]);
        if body.len() < 10 {
            return Err(malformed());
        }
        let version = body[0];
        if version != 4 {
            return Err(Notification::new(
                err::OPEN,
                err::UNSUPPORTED_VERSION,
                &4u16.to_be_bytes(),
            ));
        }
        let mut open = Open {
            version,
            asn: u16::from_be_bytes([body[1], body[2]]).into(),
            hold_time: u16::from_be_bytes([body[3], body[4]]),
            router_id: Ipv4Addr::new(body[5], body[6], body[7], body[8]),
            families: Vec::new(),
            asn4: false,
            route_refresh: false,
            graceful_restart: None,
        };
        let opt_len = body[9] as usize;
        let mut params = body.get(10..10 + opt_len).ok_or_else(malformed)?;
        if body.len() != 10 + opt_len {
            return Err(malformed());
        }
        while !params.is_empty() {
            let [kind, len, rest @ ..] = params else {
                return Err(malformed());
            };
            let value = rest.get(..*len as usize).ok_or_else(malformed)?;
            if *kind != 2 {
                return Err(Notification::new(err::OPEN, err::UNSUPPORTED_OPTIONAL, &[]));
            }
            open.capabilities(value).ok_or_else(malformed)?;
            params = &rest[*len as usize..];
        }
        Ok(open)
    }

    /// Reads a capabilities parameter; `None` if its framing is broken. Unknown
    /// capabilities are ignored (RFC 5492 §3).
    fn capabilities(&mut self, mut caps: &[u8]) -> Option<()> {
        while !caps.is_empty() {
            let [code, len, rest @ ..] = caps else {
                return None;
            };
            let value = rest.get(..*len as usize)?;
            match *code {
                CAP_MP if value.len() == 4 => {
                    let afi = u16::from_be_bytes([value[0], value[1]]);
                    if let Some(f) = Family::from_afi(afi, value[3]) {
                        self.families.push(f);
                    }
                }
                CAP_ROUTE_REFRESH => self.route_refresh = true,
                CAP_ASN4 if value.len() == 4 => {
                    self.asn4 = true;
                    self.asn = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
                }
                CAP_GRACEFUL_RESTART if value.len() >= 2 => {
                    let flags = u16::from_be_bytes([value[0], value[1]]);
                    let families = value[2..]
                        .chunks_exact(4)
                        .filter_map(|c| {
                            let f = Family::from_afi(u16::from_be_bytes([c[0], c[1]]), c[2])?;
                            Some((f, c[3] & 0x80 != 0))
                        })
                        .collect();
                    self.graceful_restart = Some(GracefulRestart {
                        restarting: flags & 0x8000 != 0,
                        restart_time: flags & 0x0fff,
                        families,
                    });
                }
                _ => {}
            }
            caps = &rest[*len as usize..];
        }
        Some(())
    }
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
}

/// The path attributes tern uses for best-path selection and display.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Attributes {
    pub origin: u8,
    pub as_path: Vec<Segment>,
    /// IPv4 NEXT_HOP attribute.
    pub next_hop: Option<Ipv4Addr>,
    /// MP_REACH_NLRI next hop (IPv6 global, or IPv4 for IPv4 routes carried in MP).
    pub mp_next_hop: Option<IpAddr>,
    pub mp_link_local: Option<Ipv6Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub communities: Vec<u32>,
    pub originator_id: Option<Ipv4Addr>,
}

impl Attributes {
    /// AS_PATH length for best-path selection: an AS_SET counts as one (RFC 4271 §9.1.2.2).
    pub fn path_len(&self) -> usize {
        self.as_path
            .iter()
            .map(|s| match s {
                Segment::Set(_) => 1,
                Segment::Sequence(v) => v.len(),
            })
            .sum()
    }

    /// The first AS of the path (the neighbouring AS), if the path starts with a sequence.
    pub fn first_as(&self) -> Option<u32> {
        match self.as_path.first() {
            Some(Segment::Sequence(v)) => v.first().copied(),
            _ => None,
        }
    }

    /// The next hop for `net`: IPv4 routes take NEXT_HOP (or an MP next hop, RFC 8950);
    /// IPv6 routes the MP_REACH global address, or the link-local one when that is all.
    pub fn next_hop_for(&self, net: &IpNet) -> Option<IpAddr> {
        match net {
            IpNet::V4(_) => self.next_hop.map(IpAddr::V4).or(self.mp_next_hop),
            IpNet::V6(_) => match self.mp_next_hop {
                Some(IpAddr::V6(g)) if !g.is_unspecified() => Some(IpAddr::V6(g)),
                _ => self.mp_link_local.map(IpAddr::V6),
            },
        }
    }

    pub fn contains_as(&self, asn: u32) -> bool {
        self.as_path.iter().any(|s| match s {
            Segment::Set(v) | Segment::Sequence(v) => v.contains(&asn),
        })
    }

    pub fn as_path_string(&self) -> String {
        let parts: Vec<String> = self
            .as_path
            .iter()
            .map(|s| match s {
                Segment::Sequence(v) => v.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
                Segment::Set(v) => format!(
                    "{{{}}}",
                    v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                ),
            })
            .collect();
        parts.join(" ")
    }
}

/// A decoded UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<IpNet>,
    pub announced: Vec<IpNet>,
    pub attributes: Attributes,
    /// RFC 7606: an attribute error made every announced prefix a withdrawal; the reason.
    pub treat_as_withdraw: Option<String>,
    /// RFC 7606 attribute-discard: attribute type codes dropped as malformed.
    pub discarded: Vec<u8>,
    /// End-of-RIB marker (RFC 4724 §2) for this family.
    pub end_of_rib: Option<Family>,
}

/// The session facts decoding depends on.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub asn4: bool,
    pub ebgp: bool,
}

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_MED: u8 = 4;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_ATOMIC_AGGREGATE: u8 = 6;
const ATTR_AGGREGATOR: u8 = 7;
const ATTR_COMMUNITIES: u8 = 8;
const ATTR_ORIGINATOR_ID: u8 = 9;
const ATTR_CLUSTER_LIST: u8 = 10;
const ATTR_MP_REACH: u8 = 14;
const ATTR_MP_UNREACH: u8 = 15;
const ATTR_AS4_PATH: u8 = 17;
const ATTR_AS4_AGGREGATOR: u8 = 18;

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED: u8 = 0x10;

impl Update {
    /// Decodes an UPDATE body. `Err` is a session-ending error with its NOTIFICATION;
    /// contained errors come back in `treat_as_withdraw` / `discarded`.
    pub fn decode(body: &[u8], ctx: Context) -> Result<Update, Notification> {
        let list = || Notification::new(err::UPDATE, err::MALFORMED_ATTRIBUTES, &[]);
        let withdrawn_len = be16(body, 0).ok_or_else(list)? as usize;
        let withdrawn = body.get(2..2 + withdrawn_len).ok_or_else(list)?;
        let attrs_at = 2 + withdrawn_len;
        let attrs_len = be16(body, attrs_at).ok_or_else(list)? as usize;
        let attrs = body
            .get(attrs_at + 2..attrs_at + 2 + attrs_len)
            .ok_or_else(list)?;
        let nlri = &body[attrs_at + 2 + attrs_len..];

        let mut u = Update {
            withdrawn: prefixes(withdrawn, Family::Ipv4).ok_or_else(list)?,
            ..Update::default()
        };
        let invalid_network = || Notification::new(err::UPDATE, err::INVALID_NETWORK, &[]);
        u.announced = prefixes(nlri, Family::Ipv4).ok_or_else(invalid_network)?;
        if withdrawn.is_empty() && attrs.is_empty() && nlri.is_empty() {
            u.end_of_rib = Some(Family::Ipv4);
            return Ok(u);
        }

        let mut seen = [false; 256];
        let mut as4_path = None;
        let mut rest = attrs;
        let mut reach_nlri = false;
        let mut unreach_empty = None;
        let mut count = 0;
        let optional = || Notification::new(err::UPDATE, err::OPTIONAL_ATTRIBUTE, &[]);
        while !rest.is_empty() {
            count += 1;
            // Framing: flags, type, 1- or 2-byte length. A length running past the
            // attributes means the list cannot be parsed at all (RFC 7606 §4: reset).
            let (&flags, tail) = rest.split_first().ok_or_else(list)?;
            let (&kind, tail) = tail.split_first().ok_or_else(list)?;
            let (len, tail) = if flags & FLAG_EXTENDED != 0 {
                (
                    be16(tail, 0).ok_or_else(list)? as usize,
                    &tail[2.min(tail.len())..],
                )
            } else {
                let (&l, t) = tail.split_first().ok_or_else(list)?;
                (l as usize, t)
            };
            let value = tail.get(..len).ok_or_else(list)?;
            rest = &tail[len..];
            if seen[kind as usize] {
                // RFC 7606 §3.g: repeated MP attributes reset; any other repeat is dropped.
                if kind == ATTR_MP_REACH || kind == ATTR_MP_UNREACH {
                    return Err(list());
                }
                u.discarded.push(kind);
                continue;
            }
            seen[kind as usize] = true;
            let mut withdraw = |why: &str| {
                if u.treat_as_withdraw.is_none() {
                    u.treat_as_withdraw = Some(why.to_string());
                }
            };
            match kind {
                ATTR_ORIGIN => match value {
                    [o @ 0..=2] => u.attributes.origin = *o,
                    _ => withdraw("malformed ORIGIN"),
                },
                ATTR_AS_PATH => match as_path(value, ctx.asn4) {
                    Some(p) => u.attributes.as_path = p,
                    None => withdraw("malformed AS_PATH"),
                },
                ATTR_AS4_PATH if !ctx.asn4 => as4_path = as_path(value, true),
                ATTR_NEXT_HOP => match value {
                    [a, b, c, d] => {
                        let nh = Ipv4Addr::new(*a, *b, *c, *d);
                        if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                            withdraw("NEXT_HOP is not a unicast address");
                        }
                        u.attributes.next_hop = Some(nh);
                    }
                    _ => withdraw("malformed NEXT_HOP"),
                },
                ATTR_MED => match value {
                    [a, b, c, d] => u.attributes.med = Some(u32::from_be_bytes([*a, *b, *c, *d])),
                    _ => withdraw("malformed MULTI_EXIT_DISC"),
                },
                // RFC 7606 §7.5: LOCAL_PREF from an external peer is discarded.
                ATTR_LOCAL_PREF if ctx.ebgp => u.discarded.push(kind),
                ATTR_LOCAL_PREF => match value {
                    [a, b, c, d] => {
                        u.attributes.local_pref = Some(u32::from_be_bytes([*a, *b, *c, *d]))
                    }
                    _ => withdraw("malformed LOCAL_PREF"),
                },
                ATTR_ATOMIC_AGGREGATE => match value {
                    [] => u.attributes.atomic_aggregate = true,
                    _ => u.discarded.push(kind),
                },
                ATTR_AGGREGATOR | ATTR_AS4_AGGREGATOR => {
                    let want = if kind == ATTR_AS4_AGGREGATOR || ctx.asn4 {
                        8
                    } else {
                        6
                    };
                    if value.len() != want {
                        u.discarded.push(kind);
                    }
                }
                ATTR_COMMUNITIES => {
                    if value.is_empty() || value.len() % 4 != 0 {
                        withdraw("malformed COMMUNITIES");
                    } else {
                        u.attributes.communities = value
                            .chunks_exact(4)
                            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                            .collect();
                    }
                }
                // Route-reflection attributes from an external peer are discarded
                // (RFC 7606 §7.9, §7.10).
                ATTR_ORIGINATOR_ID | ATTR_CLUSTER_LIST if ctx.ebgp => u.discarded.push(kind),
                ATTR_ORIGINATOR_ID => match value {
                    [a, b, c, d] => {
                        u.attributes.originator_id = Some(Ipv4Addr::new(*a, *b, *c, *d))
                    }
                    _ => withdraw("malformed ORIGINATOR_ID"),
                },
                ATTR_CLUSTER_LIST if value.is_empty() || value.len() % 4 != 0 => {
                    withdraw("malformed CLUSTER_LIST")
                }
                ATTR_MP_REACH => {
                    let reach = mp_reach(value, &mut u.attributes).ok_or_else(optional)?;
                    if let Some(nets) = reach {
                        reach_nlri |= !nets.is_empty();
                        u.announced.extend(nets);
                    }
                }
                ATTR_MP_UNREACH => {
                    let [a, b, safi, nlri @ ..] = value else {
                        return Err(optional());
                    };
                    if let Some(family) = Family::from_afi(u16::from_be_bytes([*a, *b]), *safi) {
                        let nets = prefixes(nlri, family).ok_or_else(optional)?;
                        if nets.is_empty() {
                            unreach_empty = Some(family);
                        }
                        u.withdrawn.extend(nets);
                    }
                }
                // An unrecognized well-known attribute (RFC 4271 §6.3).
                _ if flags & FLAG_OPTIONAL == 0 && !matches!(kind, ATTR_AS4_PATH) => {
                    let mut data = vec![flags, kind];
                    data.extend_from_slice(value);
                    return Err(Notification::new(
                        err::UPDATE,
                        err::UNRECOGNIZED_WELL_KNOWN,
                        &data,
                    ));
                }
                // Unknown optional attributes: tern does not re-advertise, so ignored.
                _ => {}
            }
        }
        // End-of-RIB for a multiprotocol family: an UPDATE holding only an empty
        // MP_UNREACH_NLRI (RFC 4724 §2).
        if count == 1 && u.withdrawn.is_empty() && u.announced.is_empty() {
            u.end_of_rib = unreach_empty;
        }
        if let Some(as4) = as4_path {
            u.attributes.as_path = merge_as4(&u.attributes.as_path, as4);
        }
        // Mandatory well-known attributes (RFC 7606 §3.d: missing ones → treat-as-withdraw).
        let has_v4_nlri = !nlri.is_empty();
        if has_v4_nlri || reach_nlri {
            let missing = if !seen[ATTR_ORIGIN as usize] {
                Some("ORIGIN")
            } else if !seen[ATTR_AS_PATH as usize] {
                Some("AS_PATH")
            } else if has_v4_nlri && !seen[ATTR_NEXT_HOP as usize] {
                Some("NEXT_HOP")
            } else {
                None
            };
            if let Some(m) = missing {
                if u.treat_as_withdraw.is_none() {
                    u.treat_as_withdraw = Some(format!("missing {m}"));
                }
            }
        }
        if u.treat_as_withdraw.is_some() {
            let announced = std::mem::take(&mut u.announced);
            u.withdrawn.extend(announced);
        }
        Ok(u)
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Prefixes in NLRI encoding (length in bits, then the significant octets); `None` if a
/// length is impossible for the family or runs past the end.
pub(crate) fn prefixes(mut b: &[u8], family: Family) -> Option<Vec<IpNet>> {
    let mut out = Vec::with_capacity(b.len() / 4);
    while let Some((&len, rest)) = b.split_first() {
        let octets = (len as usize).div_ceil(8);
        let bytes = rest.get(..octets)?;
        b = &rest[octets..];
        let net = match family {
            Family::Ipv4 => {
                if len > 32 {
                    return None;
                }
                let mut a = [0u8; 4];
                a[..octets].copy_from_slice(bytes);
                IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), len).ok()?.trunc())
            }
            Family::Ipv6 => {
                if len > 128 {
                    return None;
                }
                let mut a = [0u8; 16];
                a[..octets].copy_from_slice(bytes);
                IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), len).ok()?.trunc())
            }
        };
        out.push(net);
    }
    Some(out)
}

/// Appends `net` in NLRI encoding.
pub fn push_prefix(out: &mut Vec<u8>, net: &IpNet) {
    let len = net.prefix_len();
    out.push(len);
    let octets = (len as usize).div_ceil(8);
    match net {
        IpNet::V4(n) => out.extend_from_slice(&n.network().octets()[..octets]),
        IpNet::V6(n) => out.extend_from_slice(&n.network().octets()[..octets]),
    }
}

fn as_path(mut b: &[u8], asn4: bool) -> Option<Vec<Segment>> {
    let width = if asn4 { 4 } else { 2 };
    let mut out = Vec::new();
    while let Some((&kind, rest)) = b.split_first() {
        let (&count, rest) = rest.split_first()?;
        if count == 0 {
            return None;
        }
        let bytes = rest.get(..count as usize * width)?;
        b = &rest[count as usize * width..];
        let asns = bytes
            .chunks_exact(width)
            .map(|c| match c {
                [a, b2, c2, d] => u32::from_be_bytes([*a, *b2, *c2, *d]),
                [a, b2] => u16::from_be_bytes([*a, *b2]).into(),
                _ => 0,
            })
            .collect();
        out.push(match kind {
            1 => Segment::Set(asns),
            2 => Segment::Sequence(asns),
            // Confederation segments (3, 4) are not for a leaf; anything else is malformed.
            _ => return None,
        });
    }
    Some(out)
}

/// RFC 6793 §4.2.3: the AS4_PATH replaces the tail of a 2-octet AS_PATH.
fn merge_as4(two: &[Segment], four: Vec<Segment>) -> Vec<Segment> {
    let flat = |p: &[Segment]| -> Vec<u32> {
        p.iter()
            .flat_map(|s| match s {
                Segment::Set(v) | Segment::Sequence(v) => v.clone(),
            })
            .collect()
    };
    let (a, b) = (flat(two), flat(&four));
    if b.len() > a.len() {
        return two.to_vec();
    }
    let mut merged = vec![Segment::Sequence(a[..a.len() - b.len()].to_vec())];
    merged.extend(four);
    merged.retain(|s| !matches!(s, Segment::Sequence(v) if v.is_empty()));
    merged
}

/// Parses MP_REACH_NLRI: the prefixes, `Some(None)` for a family tern does not speak,
/// `None` if malformed.
fn mp_reach(value: &[u8], attrs: &mut Attributes) -> Option<Option<Vec<IpNet>>> {
    let [a, b, safi, nh_len, rest @ ..] = value else {
        return None;
    };
    let nh = rest.get(..*nh_len as usize)?;
    // One reserved octet, then the NLRI.
    let nlri = rest.get(*nh_len as usize + 1..)?;
    let Some(family) = Family::from_afi(u16::from_be_bytes([*a, *b]), *safi) else {
        return Some(None);
    };
    match (family, nh.len()) {
        (Family::Ipv4, 4) => {
            attrs.mp_next_hop = Some(IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])))
        }
        (Family::Ipv6, 16) | (Family::Ipv6, 32) => {
            let mut g = [0u8; 16];
            g.copy_from_slice(&nh[..16]);
            attrs.mp_next_hop = Some(IpAddr::V6(Ipv6Addr::from(g)));
            if nh.len() == 32 {
                let mut l = [0u8; 16];
                l.copy_from_slice(&nh[16..]);
                attrs.mp_link_local = Some(Ipv6Addr::from(l));
            }
        }
        // RFC 8950: an IPv6 next hop for IPv4 routes.
        (Family::Ipv4, 16) | (Family::Ipv4, 32) => {
            let mut g = [0u8; 16];
            g.copy_from_slice(&nh[..16]);
            attrs.mp_next_hop = Some(IpAddr::V6(Ipv6Addr::from(g)));
        }
        _ => return None,
    }
    Some(Some(prefixes(nlri, family)?))
}

/// What tern announces for its own prefixes.
#[derive(Debug, Clone)]
pub struct Announce {
    pub local_as: u32,
    pub ebgp: bool,
    pub asn4: bool,
    pub next_hop: IpAddr,
}

/// UPDATE messages announcing `nets` (one family) with ORIGIN IGP, our AS prepended on
/// eBGP, next hop self; as many messages as the 4096-byte limit needs.
pub fn announce(nets: &[IpNet], a: &Announce) -> Vec<Vec<u8>> {
    let mut path = Vec::new();
    if a.ebgp {
        path.extend_from_slice(&[2, 1]);
        if a.asn4 {
            path.extend_from_slice(&a.local_as.to_be_bytes());
        } else {
            path.extend_from_slice(&u16::try_from(a.local_as).unwrap_or(AS_TRANS).to_be_bytes());
        }
    }
    let mut common = Vec::new();
    common.extend_from_slice(&[FLAG_TRANSITIVE, ATTR_ORIGIN, 1, 0]);
    common.extend_from_slice(&[FLAG_TRANSITIVE, ATTR_AS_PATH, path.len() as u8]);
    common.extend_from_slice(&path);
    if !a.ebgp {
        common.extend_from_slice(&[FLAG_TRANSITIVE, ATTR_LOCAL_PREF, 4, 0, 0, 0, 100]);
    }
    let mut out = Vec::new();
    for chunk in nets.chunks(200) {
        let mut nlri = Vec::new();
        for n in chunk {
            push_prefix(&mut nlri, n);
        }
        let mut attrs = common.clone();
        let v4_nets = matches!(chunk.first(), Some(IpNet::V4(_)));
        match (v4_nets, a.next_hop) {
            (true, IpAddr::V4(nh)) => {
                attrs.extend_from_slice(&[FLAG_TRANSITIVE, ATTR_NEXT_HOP, 4]);
                attrs.extend_from_slice(&nh.octets());
            }
            (_, nh) => {
                let (afi, nh_bytes) = match nh {
                    IpAddr::V4(x) => (AFI_IPV4, x.octets().to_vec()),
                    IpAddr::V6(x) => (
                        if v4_nets { AFI_IPV4 } else { AFI_IPV6 },
                        x.octets().to_vec(),
                    ),
                };
                let mut v = afi.to_be_bytes().to_vec();
                v.push(SAFI_UNICAST);
                v.push(nh_bytes.len() as u8);
                v.extend_from_slice(&nh_bytes);
                v.push(0);
                v.extend_from_slice(&nlri);
                attrs.extend_from_slice(&[FLAG_OPTIONAL | FLAG_EXTENDED, ATTR_MP_REACH]);
                attrs.extend_from_slice(&(v.len() as u16).to_be_bytes());
                attrs.extend_from_slice(&v);
                nlri.clear();
            }
        }
        let mut m = header(UPDATE);
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&attrs);
        m.extend_from_slice(&nlri);
        out.push(finish(m));
    }
    out
}

/// UPDATE messages withdrawing `nets` (one family).
pub fn withdraw(nets: &[IpNet]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for chunk in nets.chunks(200) {
        let mut body = Vec::new();
        for n in chunk {
            push_prefix(&mut body, n);
        }
        let mut m = header(UPDATE);
        match chunk.first() {
            Some(IpNet::V4(_)) => {
                m.extend_from_slice(&(body.len() as u16).to_be_bytes());
                m.extend_from_slice(&body);
                m.extend_from_slice(&[0, 0]);
            }
            _ => {
                let mut v = AFI_IPV6.to_be_bytes().to_vec();
                v.push(SAFI_UNICAST);
                v.extend_from_slice(&body);
                m.extend_from_slice(&[0, 0]);
                let attrs_len = 4 + v.len();
                m.extend_from_slice(&(attrs_len as u16).to_be_bytes());
                m.extend_from_slice(&[FLAG_OPTIONAL | FLAG_EXTENDED, ATTR_MP_UNREACH]);
                m.extend_from_slice(&(v.len() as u16).to_be_bytes());
                m.extend_from_slice(&v);
            }
        }
        out.push(finish(m));
    }
    out
}

/// The End-of-RIB marker for `family` (RFC 4724 §2).
pub fn end_of_rib(family: Family) -> Vec<u8> {
    let mut m = header(UPDATE);
    match family {
        Family::Ipv4 => m.extend_from_slice(&[0, 0, 0, 0]),
        Family::Ipv6 => {
            m.extend_from_slice(&[0, 0, 0, 6, FLAG_OPTIONAL, ATTR_MP_UNREACH, 3, 0, 2, 1]);
        }
    }
    finish(m)
}

/// A ROUTE-REFRESH request for `family` (RFC 2918).
pub fn route_refresh(family: Family) -> Vec<u8> {
    let mut m = header(ROUTE_REFRESH);
    m.extend_from_slice(&family.afi().to_be_bytes());
    m.extend_from_slice(&[0, SAFI_UNICAST]);
    finish(m)
}
