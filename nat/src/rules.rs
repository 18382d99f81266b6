//! What the operator configures: the external addresses, filtering, timeouts, quotas, and
//! the DNAT frontends (static port forwards and Maglev balancers). A shard holds the rules
//! behind an `Arc` and takes a new set between bursts, so rules change without a restart.

use std::collections::{HashMap, HashSet};

use crate::flow::{Flow, ICMP, TCP, UDP};
use crate::maglev;
use crate::table::Class;

/// Which inbound packets a mapping lets in (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone may reach the mapping.
    EndpointIndependent,
    /// Only addresses the inside host has sent to (the default).
    AddressDependent,
    /// Only address and port pairs the inside host has sent to.
    AddressAndPortDependent,
}

impl Filtering {
    pub fn parse(s: &str) -> Option<Filtering> {
        match s {
            "endpoint-independent" => Some(Filtering::EndpointIndependent),
            "address-dependent" => Some(Filtering::AddressDependent),
            "address-and-port-dependent" => Some(Filtering::AddressAndPortDependent),
            _ => None,
        }
    }
    pub fn name(&self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => "endpoint-independent",
            Filtering::AddressDependent => "address-dependent",
            Filtering::AddressAndPortDependent => "address-and-port-dependent",
        }
    }
}

/// Idle timeouts in milliseconds, per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub udp: u64,
    pub tcp_established: u64,
    pub tcp_transitory: u64,
    pub icmp: u64,
    pub other: u64,
    /// How long an unsolicited inbound SYN is held before ICMP port unreachable.
    pub syn_hold: u64,
    /// How long a freed external port rests before it is handed out again, when a remote
    /// ever answered on it (a port nobody answered on is free at once: see
    /// `Mapping::answered`).
    pub port_hold: u64,
    /// How long fragments of a datagram are remembered after its last fragment.
    pub fragment: u64,
}

impl Timeouts {
    /// The idle timeout of a session class.
    pub fn idle(&self, class: Class) -> u64 {
        match class {
            Class::TcpEstablished => self.tcp_established,
            Class::TcpTransitory => self.tcp_transitory,
            Class::Udp => self.udp,
            Class::Icmp => self.icmp,
            Class::Other => self.other,
        }
    }
}

/// RFC 4787 REQ-5 (UDP ≥ 2 min, 5 min recommended), RFC 5382 REQ-5 (established
/// ≥ 2 h 4 min, transitory ≥ 4 min), RFC 5508 REQ-1 (ICMP query ≥ 60 s).
pub const DEFAULT_TIMEOUTS: Timeouts = Timeouts {
    udp: 300_000,
    tcp_established: 7_440_000,
    tcp_transitory: 240_000,
    icmp: 60_000,
    other: 600_000,
    syn_hold: 6_000,
    port_hold: 120_000,
    fragment: 2_000,
};

/// The default quota of external ports (mappings) per inside host, RFC 6888 REQ-4: 1/16
/// of the 64 512 unprivileged ports of an external address for one protocol, so one host,
/// however busy or compromised, leaves fifteen sixteenths to the others, while 4096
/// concurrent mappings is several times what a busy desktop opens.
pub const DEFAULT_PORTS_PER_HOST: u32 = 4096;

/// The floor the RFCs set under each configurable timeout (ms).
pub const MIN_UDP: u64 = 120_000;
pub const MIN_TCP_ESTABLISHED: u64 = 7_440_000;
pub const MIN_TCP_TRANSITORY: u64 = 240_000;
pub const MIN_ICMP: u64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: u32,
    pub port: u16,
}

impl Endpoint {
    /// A compact key for (protocol, endpoint) indices.
    #[inline]
    pub fn key(&self, proto: u8) -> u64 {
        (proto as u64) << 48 | (self.addr as u64) << 16 | self.port as u64
    }
}

/// `192.0.2.10:80`.
impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Endpoint, String> {
        let a: std::net::SocketAddrV4 = s
            .parse()
            .map_err(|_| format!("{s:?} is not IPv4-address:port"))?;
        Ok(Endpoint {
            addr: (*a.ip()).into(),
            port: a.port(),
        })
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", std::net::Ipv4Addr::from(self.addr), self.port)
    }
}

/// A DNAT frontend: static forward (one backend) or balancer (several).
#[derive(Debug, Clone, PartialEq)]
pub struct Frontend {
    pub name: String,
    pub proto: u8,
    pub external: Endpoint,
    pub backends: Vec<Endpoint>,
    /// Health: false takes a backend out of the Maglev table.
    pub up: Vec<bool>,
    table: Vec<u16>,
}

impl Frontend {
    pub fn new(name: String, proto: u8, external: Endpoint, backends: Vec<Endpoint>) -> Self {
        let up = vec![true; backends.len()];
        let mut f = Frontend {
            name,
            proto,
            external,
            backends,
            up,
            table: Vec::new(),
        };
        f.rebuild();
        f
    }

    fn rebuild(&mut self) {
        let ids: Vec<u64> = self
            .backends
            .iter()
            .map(|b| (b.addr as u64) << 16 | b.port as u64)
            .collect();
        self.table = maglev::build(&ids, &self.up, maglev::table_size(ids.len()));
    }

    /// Marks backend `i` up or down; returns whether that changed anything.
    pub fn set_up(&mut self, i: usize, up: bool) -> bool {
        if self.up.get(i) == Some(&up) || i >= self.up.len() {
            return false;
        }
        self.up[i] = up;
        self.rebuild();
        true
    }

    /// The backend for a new flow with hash `h`, if any backend is up.
    pub fn pick(&self, h: u64) -> Option<Endpoint> {
        let slot = self
            .table
            .get((h % self.table.len().max(1) as u64) as usize)?;
        self.backends.get(*slot as usize).copied()
    }

    pub fn table_len(&self) -> usize {
        self.table.len()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// External addresses to SNAT to. Empty: masquerade to the egress interface address.
    pub pool: Vec<u32>,
    pub filtering: Filtering,
    pub timeouts: Timeouts,
    /// Sessions per shard, preallocated.
    pub capacity: usize,
    /// Per inside address (RFC 6888 REQ-4/5); 0 = unlimited.
    pub max_sessions_per_host: u32,
    pub max_ports_per_host: u32,
    pub frontends: Vec<Frontend>,
    index: HashMap<u64, usize>,
    /// Every frontend's backends, as endpoint keys and as addresses: replies from a
    /// backend are steered to the worker of the client, not of the backend (steer.rs).
    backends: HashSet<u64>,
    backend_addrs: HashSet<u32>,
    /// Seed of the balancers' flow hash: random per process.
    pub seed: u64,
}

impl Rules {
    pub fn new(seed: u64) -> Rules {
        Rules {
            pool: Vec::new(),
            filtering: Filtering::AddressDependent,
            timeouts: DEFAULT_TIMEOUTS,
            capacity: 1 << 16,
            max_sessions_per_host: 0,
            max_ports_per_host: DEFAULT_PORTS_PER_HOST,
            frontends: Vec::new(),
            index: HashMap::new(),
            backends: HashSet::new(),
            backend_addrs: HashSet::new(),
            seed,
        }
    }

    /// Adds a frontend; refuses a second one on the same protocol, address and port.
    pub fn add_frontend(&mut self, f: Frontend) -> Result<(), String> {
        let key = f.external.key(f.proto);
        if self.index.contains_key(&key) {
            return Err(format!("{} is already a frontend", f.external));
        }
        if f.backends.is_empty() || f.backends.len() > maglev::MAX_BACKENDS {
            return Err(format!(
                "a frontend needs 1..={} backends",
                maglev::MAX_BACKENDS
            ));
        }
        if !matches!(f.proto, TCP | UDP) {
            return Err("frontends forward tcp or udp".into());
        }
        self.frontends.push(f);
        self.reindex();
        Ok(())
    }

    pub fn remove_frontend(&mut self, name: &str) -> bool {
        let before = self.frontends.len();
        self.frontends.retain(|f| f.name != name);
        self.reindex();
        before != self.frontends.len()
    }

    fn reindex(&mut self) {
        self.index = self
            .frontends
            .iter()
            .enumerate()
            .map(|(i, f)| (f.external.key(f.proto), i))
            .collect();
        let backends = || {
            self.frontends
                .iter()
                .flat_map(|f| f.backends.iter().map(|b| (f.proto, b)))
        };
        self.backends = backends().map(|(proto, b)| b.key(proto)).collect();
        self.backend_addrs = backends().map(|(_, b)| b.addr).collect();
    }

    /// Whether `addr:port` over `proto` is some frontend's backend.
    pub fn is_backend(&self, proto: u8, addr: u32, port: u16) -> bool {
        !self.backends.is_empty() && self.backends.contains(&Endpoint { addr, port }.key(proto))
    }

    /// Whether `addr` is the address of some frontend's backend.
    pub fn is_backend_address(&self, addr: u32) -> bool {
        !self.backend_addrs.is_empty() && self.backend_addrs.contains(&addr)
    }

    /// Whether `addr` is some frontend's external address.
    pub fn is_frontend_address(&self, addr: u32) -> bool {
        self.frontends.iter().any(|f| f.external.addr == addr)
    }

    /// The frontend a packet to `flow.dst:flow.dport` reaches, if any.
    pub fn frontend(&self, flow: &Flow) -> Option<&Frontend> {
        if self.frontends.is_empty() || flow.proto == ICMP {
            return None;
        }
        let key = Endpoint {
            addr: flow.dst,
            port: flow.dport,
        }
        .key(flow.proto);
        self.index.get(&key).map(|&i| &self.frontends[i])
    }

    pub fn frontend_mut(&mut self, name: &str) -> Option<&mut Frontend> {
        self.frontends.iter_mut().find(|f| f.name == name)
    }

    /// The balancers' hash of a new flow: its source endpoint and protocol.
    pub fn flow_hash(&self, flow: &Flow) -> u64 {
        maglev::mix(
            self.seed ^ (flow.src as u64) << 24 ^ (flow.sport as u64) << 8 ^ flow.proto as u64,
        )
    }
}
