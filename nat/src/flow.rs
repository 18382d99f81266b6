//! What the NAT reads from an IPv4 packet: the 5-tuple (ICMP query identifiers in the port
//! fields), where the transport header is, and whether the packet is a fragment. The
//! dataplane has validated the IPv4 header already; everything past it is checked here.

use wire::{get16, get32, icmp, ipv4, tcp, udp};

/// Protocol numbers the NAT knows by name.
pub const TCP: u8 = ipv4::PROTO_TCP;
pub const UDP: u8 = ipv4::PROTO_UDP;
pub const ICMP: u8 = ipv4::PROTO_ICMP;

/// TCP flag bits.
pub use wire::tcp::{ACK, FIN, RST, SYN};

/// One direction of a flow. For an ICMP echo request the identifier is in `sport` and
/// `dport` is 0; for an echo reply it is in `dport` and `sport` is 0, so that a request and
/// its reply are the two directions of one flow, exactly like ports. Protocols other than
/// TCP, UDP and ICMP are tracked by address pair: both ports are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flow {
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
}

impl Flow {
    /// The same flow seen from the other end.
    pub fn reversed(&self) -> Flow {
        Flow {
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// A compact key for the hash indices (104 significant bits).
    #[inline]
    pub fn key(&self) -> u128 {
        (self.proto as u128) << 96
            | (self.src as u128) << 64
            | (self.dst as u128) << 32
            | (self.sport as u128) << 16
            | self.dport as u128
    }
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, d) = (
            std::net::Ipv4Addr::from(self.src),
            std::net::Ipv4Addr::from(self.dst),
        );
        write!(
            f,
            "{} {s}:{} -> {d}:{}",
            proto_name(self.proto),
            self.sport,
            self.dport
        )
    }
}

pub fn proto_name(p: u8) -> String {
    match p {
        TCP => "tcp".into(),
        UDP => "udp".into(),
        ICMP => "icmp".into(),
        other => other.to_string(),
    }
}

/// The protocol named by `s` (as `proto_name` prints it, or a number).
pub fn proto_by_name(s: &str) -> Option<u8> {
    match s {
        "tcp" => Some(TCP),
        "udp" => Some(UDP),
        "icmp" => Some(ICMP),
        n => n.parse().ok(),
    }
}

/// The protocol of a DNAT frontend: `tcp` or `udp`.
pub fn frontend_proto(s: &str) -> Option<u8> {
    proto_by_name(s).filter(|&p| p == TCP || p == UDP)
}

/// The transport-level view of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        flags: u8,
    },
    Udp,
    /// Echo request (`true`) or reply.
    IcmpQuery {
        request: bool,
    },
    /// An ICMP error: the quoted packet starts 8 bytes into the ICMP message.
    IcmpError,
    /// Other protocols, and ICMP types that are neither errors nor echo.
    Other,
}

/// Which part of a datagram a packet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    Whole,
    /// Offset 0 with more fragments to come: has the transport header.
    First,
    /// Offset > 0: addresses and protocol only.
    Later,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub flow: Flow,
    pub l4: L4,
    /// Offset of the transport header from the IPv4 header.
    pub l4_offset: usize,
    pub fragment: Fragment,
    pub ident: u16,
}

/// Why a packet could not be read as a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The transport header does not fit in the packet (or in the first fragment: RFC 1858).
    Truncated,
}

/// Reads the flow of the IPv4 packet `ip` (header already validated: version, IHL, total
/// length within the buffer, checksum). Each header is read through one fixed-size view,
/// so there is one bounds check per header rather than one per field: this runs for
/// every NAT packet.
pub fn parse(ip: &[u8]) -> Result<Parsed, ParseError> {
    let Some(h) = ip.first_chunk::<20>() else {
        return Err(ParseError::Truncated);
    };
    let ihl = ipv4::header_len(h);
    let total = (get16(h, ipv4::TOTAL_LEN) as usize).min(ip.len());
    let ff = get16(h, ipv4::FLAGS_FRAG);
    let fragment = match (ff & ipv4::OFFSET_MASK, ff & ipv4::FLAG_MF != 0) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First,
        _ => Fragment::Later,
    };
    let mut flow = Flow {
        proto: h[ipv4::PROTO],
        src: get32(h, ipv4::SRC),
        dst: get32(h, ipv4::DST),
        sport: 0,
        dport: 0,
    };
    let l4 = if fragment == Fragment::Later {
        match flow.proto {
            TCP => L4::Tcp { flags: 0 },
            UDP => L4::Udp,
            _ => L4::Other,
        }
    } else {
        // An IHL beyond the total length leaves no transport header.
        let t = ip.get(ihl..total).unwrap_or_default();
        match flow.proto {
            TCP => {
                let t = t
                    .first_chunk::<{ tcp::MIN_LEN }>()
                    .ok_or(ParseError::Truncated)?;
                flow.sport = tcp::src_port(t);
                flow.dport = tcp::dst_port(t);
                L4::Tcp {
                    flags: tcp::flags(t),
                }
            }
            UDP => {
                let t = t
                    .first_chunk::<{ udp::LEN }>()
                    .ok_or(ParseError::Truncated)?;
                flow.sport = udp::src_port(t);
                flow.dport = udp::dst_port(t);
                L4::Udp
            }
            ICMP => {
                let t = t
                    .first_chunk::<{ icmp::LEN }>()
                    .ok_or(ParseError::Truncated)?;
                match icmp::kind(t) {
                    wire::icmp4::ECHO_REQUEST => {
                        flow.sport = icmp::echo_ident(t);
                        L4::IcmpQuery { request: true }
                    }
                    wire::icmp4::ECHO_REPLY => {
                        flow.dport = icmp::echo_ident(t);
                        L4::IcmpQuery { request: false }
                    }
                    ty if wire::icmp4::is_error(ty) => L4::IcmpError,
                    _ => L4::Other,
                }
            }
            _ => L4::Other,
        }
    };
    Ok(Parsed {
        flow,
        l4,
        l4_offset: ihl,
        fragment,
        ident: get16(h, ipv4::IDENT),
    })
}

/// Reads the flow of a packet quoted in an ICMP error: as much as is there, at least the
/// IPv4 header and the first 8 bytes of its transport header (ports, ICMP id). Returns
/// the flow and the quoted header length.
pub fn parse_quoted(q: &[u8]) -> Option<(Flow, usize)> {
    if q.len() < ipv4::MIN_LEN || ipv4::version(q) != 4 {
        return None;
    }
    let ihl = ipv4::header_len(q);
    if ihl < ipv4::MIN_LEN || q.len() < ihl + 8 {
        return None;
    }
    if ipv4::flags_frag(q) & ipv4::OFFSET_MASK != 0 {
        return None;
    }
    let l4 = &q[ihl..];
    let proto = ipv4::proto(q);
    // The first 8 bytes of a TCP header have its ports where UDP has them.
    let (sport, dport) = match proto {
        TCP | UDP => (udp::src_port(l4), udp::dst_port(l4)),
        ICMP => match icmp::kind(l4) {
            wire::icmp4::ECHO_REQUEST => (icmp::echo_ident(l4), 0),
            wire::icmp4::ECHO_REPLY => (0, icmp::echo_ident(l4)),
            _ => return None,
        },
        _ => (0, 0),
    };
    let flow = Flow {
        proto,
        src: get32(q, ipv4::SRC),
        dst: get32(q, ipv4::DST),
        sport,
        dport,
    };
    Some((flow, ihl))
}
