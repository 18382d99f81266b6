//! The TOML configuration: parsed, then validated into [`Config`]. Every error names the
//! file, the line and the field, e.g. `tern.toml:12: interface[1].mtu: 9000 is above 2000`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use toml::Spanned;

mod bgp;
mod interfaces;
mod nat;
mod routes;
mod tunnel;
use crate::wire::Mac;
pub use nat::{masquerade_address, BackendCheck, NatConfig};

/// How a section reports an error: at a span of the file, naming the field.
type At<'a> = &'a dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError;
/// How a section reads an integer field: (value, field, min, max, default).
type Int<'a> = &'a dyn Fn(&Option<Spanned<i64>>, &str, i64, i64, i64) -> Result<i64, ConfigError>;

/// The configuration `tern run` and `tern demo` use when given none: two TAP ports, one
/// towards a client network and one towards a server network.
pub const DEFAULT: &str = include_str!("default.toml");

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub workers: usize,
    /// Core per worker, when pinning was asked for.
    pub cores: Option<Vec<usize>>,
    pub burst: usize,
    pub pool: usize,
    pub icmp_rate: u32,
    pub icmp_burst: u32,
    pub neighbor_timeout: Duration,
    pub interfaces: Vec<Interface>,
    pub routes: Vec<StaticRoute>,
    pub neighbors: Vec<StaticNeighbor>,
    pub tunnels: Vec<tunnels::Spec>,
    pub nat: Option<NatConfig>,
    pub socket: PathBuf,
    /// Whether each port gets a kernel host interface (see `io::host`): on by default when
    /// BGP or FPM is configured (sessions and zebra need the kernel's view of the ports).
    pub host_interfaces: bool,
    pub bgp: Option<bgp_glue::BgpConfig>,
    /// Prometheus `/metrics` endpoint (`[control] metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// zebra's FPM stream (`[fpm]`): FRR as the control plane.
    pub fpm: Option<bgp_glue::fpm::FpmConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A TAP device tern creates.
    Tap,
    /// An existing kernel interface (a NIC, a veth end) tern adopts through AF_XDP.
    AfXdp,
    /// In-process queues (tests, benchmarks).
    Memory,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    pub name: String,
    pub backend: Backend,
    pub mac: Mac,
    pub mtu: u16,
    pub v4: Vec<Ipv4Net>,
    pub v6: Vec<Ipv6Net>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StaticRoute {
    pub prefix: IpNet,
    pub via: Option<IpAddr>,
    /// Index into `interfaces` for an on-link route.
    pub interface: Option<usize>,
    /// Index into `tunnels` for a route into a tunnel.
    pub tunnel: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StaticNeighbor {
    pub interface: usize,
    pub address: IpAddr,
    pub mac: Mac,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.field, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    control: RawControl,
    #[serde(default)]
    interface: Vec<interfaces::RawInterface>,
    #[serde(default)]
    route: Vec<routes::RawRoute>,
    #[serde(default)]
    neighbor: Vec<routes::RawNeighbor>,
    #[serde(default)]
    tunnel: Vec<tunnel::RawTunnel>,
    nat: Option<nat::RawNat>,
    bgp: Option<bgp::RawBgp>,
    fpm: Option<RawFpm>,
}

/// `[fpm]`: where zebra's `dplane_fpm_nl` connects.
///
/// ```toml
/// [fpm]
/// listen = "127.0.0.1:2620"   # FRR's default port
/// stale_time = 30             # seconds zebra has to replay its table after reconnecting
/// ```
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFpm {
    listen: Option<Spanned<String>>,
    stale_time: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDataplane {
    workers: Option<Spanned<i64>>,
    cores: Option<Spanned<Vec<i64>>>,
    burst: Option<Spanned<i64>>,
    pool: Option<Spanned<i64>>,
    icmp_rate: Option<Spanned<i64>>,
    icmp_burst: Option<Spanned<i64>>,
    neighbor_timeout: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Option<String>,
    host_interfaces: Option<Spanned<bool>>,
    /// Where Prometheus scrapes `/metrics` (off when absent).
    metrics: Option<Spanned<String>>,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            field: String::new(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&file, &text)
    }

    pub fn default_config() -> Config {
        match Config::parse("<embedded default>", DEFAULT) {
            Ok(c) => c,
            // The embedded file is tested; failing here is a build defect, not an input error.
            Err(e) => panic!("embedded default config is invalid: {e}"),
        }
    }

    /// Parses and validates `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let at = |span: std::ops::Range<usize>, field: &str, message: String| ConfigError {
            file: file.to_string(),
            line: line_of(text, span.start),
            field: field.to_string(),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(0);
            ConfigError {
                file: file.to_string(),
                line,
                field: String::new(),
                message: e.message().to_string(),
            }
        })?;

        let int = |v: &Option<Spanned<i64>>, field: &str, min: i64, max: i64, default: i64| {
            int_in(&at, v, field, min, max, default)
        };
        let d = &raw.dataplane;
        let workers = int(&d.workers, "dataplane.workers", 1, 64, 1)? as usize;
        let cores = match &d.cores {
            None => None,
            Some(c) => {
                // The cores this process may run on (its affinity mask, not a count: under
                // `taskset -c 1` core 1 is valid and core 0 is not).
                let available: Vec<i64> = core_affinity::get_core_ids()
                    .map(|ids| ids.iter().map(|id| id.id as i64).collect())
                    .unwrap_or_default();
                if c.get_ref().len() != workers {
                    return Err(at(
                        c.span(),
                        "dataplane.cores",
                        format!("{} cores for {workers} workers", c.get_ref().len()),
                    ));
                }
                if let Some(bad) = c.get_ref().iter().find(|n| !available.contains(n)) {
                    return Err(at(
                        c.span(),
                        "dataplane.cores",
                        format!("core {bad} is not available to tern (cores {available:?})"),
                    ));
                }
                Some(c.get_ref().iter().map(|&n| n as usize).collect())
            }
        };
        let burst = int(&d.burst, "dataplane.burst", 1, 256, 32)? as usize;
        let pool = int(&d.pool, "dataplane.pool", 256, 1 << 20, 4096)? as usize;
        if pool < burst * 8 {
            let span = d.pool.as_ref().map(|p| p.span()).unwrap_or(0..0);
            return Err(at(
                span,
                "dataplane.pool",
                format!("{pool} frames is less than 8 bursts of {burst}"),
            ));
        }
        let icmp_rate = int(&d.icmp_rate, "dataplane.icmp_rate", 0, 1_000_000, 100)? as u32;
        let icmp_burst = int(&d.icmp_burst, "dataplane.icmp_burst", 1, 1_000_000, 50)? as u32;
        let neighbor_timeout = Duration::from_secs(int(
            &d.neighbor_timeout,
            "dataplane.neighbor_timeout",
            5,
            86_400,
            300,
        )? as u64);

        let interfaces = interfaces::parse(&raw.interface, file, &at, &int)?;
        let tunnels = tunnel::parse(&raw.tunnel, &interfaces, file, &at, &int)?;
        let routes = routes::parse_routes(&raw.route, &interfaces, &tunnels, file, &at)?;
        let neighbors = routes::parse_neighbors(&raw.neighbor, &interfaces, &at)?;

        let nat = match &raw.nat {
            None => None,
            Some(n) => Some(nat::parse(n, &interfaces, &tunnels, &at)?),
        };
        let bgp = match &raw.bgp {
            None => None,
            Some(b) => Some(bgp::parse(b, &at)?),
        };
        let fpm = match &raw.fpm {
            None => None,
            Some(f) => Some(parse_fpm(f, &at)?),
        };
        let metrics = match &raw.control.metrics {
            None => None,
            Some(m) => Some(m.get_ref().parse().map_err(|_| {
                let text = m.get_ref();
                at(
                    m.span(),
                    "control.metrics",
                    format!("{text:?} is not an address:port"),
                )
            })?),
        };
        // BGP, FPM and backend health checks talk through the kernel's TCP.
        let checks = nat.as_ref().is_some_and(|n| !n.checks.is_empty());
        let host_interfaces = raw
            .control
            .host_interfaces
            .as_ref()
            .map_or(bgp.is_some() || fpm.is_some() || checks, |h| *h.get_ref());
        if let Some(off) = raw
            .control
            .host_interfaces
            .as_ref()
            .filter(|_| checks && !host_interfaces)
        {
            return Err(at(
                off.span(),
                "control.host_interfaces",
                "is false, but NAT backend health checks connect through the host interfaces"
                    .into(),
            ));
        }
        Ok(Config {
            nat,
            workers,
            cores,
            burst,
            pool,
            icmp_rate,
            icmp_burst,
            neighbor_timeout,
            interfaces,
            routes,
            neighbors,
            tunnels,
            socket: raw
                .control
                .socket
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/run/tern/tern.sock")),
            host_interfaces,
            bgp,
            fpm,
            metrics,
        })
    }
}

fn parse_fpm(
    raw: &RawFpm,
    at: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
) -> Result<bgp_glue::fpm::FpmConfig, ConfigError> {
    let listen = match &raw.listen {
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 2620)),
        Some(s) => s.get_ref().parse().map_err(|_| {
            let text = s.get_ref();
            at(
                s.span(),
                "fpm.listen",
                format!("{text:?} is not an address:port"),
            )
        })?,
    };
    let stale_time = int_in(at, &raw.stale_time, "fpm.stale_time", 1, 3600, 30)?;
    Ok(bgp_glue::fpm::FpmConfig {
        listen,
        stale_time: Duration::from_secs(stale_time as u64),
    })
}

/// A prefix with its host bits clear, or what is wrong with the text: the one prefix
/// parser of the config file, `tern ctl route` and the listing queries.
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let prefix: IpNet = text
        .parse()
        .map_err(|_| format!("{text:?} is not a prefix"))?;
    if prefix.trunc() != prefix {
        return Err(format!(
            "{prefix} has host bits set (did you mean {}?)",
            prefix.trunc()
        ));
    }
    Ok(prefix)
}

/// An integer field: `default` when absent, an error naming the field when outside
/// `min..=max`.
fn int_in(
    at: &dyn Fn(std::ops::Range<usize>, &str, String) -> ConfigError,
    v: &Option<Spanned<i64>>,
    field: &str,
    min: i64,
    max: i64,
    default: i64,
) -> Result<i64, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
        Some(s) => Err(at(
            s.span(),
            field,
            format!("{} is outside {min}..={max}", s.get_ref()),
        )),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())]
        .bytes()
        .filter(|&b| b == b'\n')
        .count()
        + 1
}

/// Parses `aa:bb:cc:dd:ee:ff`; refuses multicast (and broadcast) addresses.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 {
        return None;
    }
    Some(mac)
}

pub fn format_mac(m: &Mac) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A stable locally administered MAC from the interface name (FNV-1a).
fn derived_mac(name: &str) -> Mac {
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    let b = h.to_be_bytes();
    [0x02, b[0], b[1], b[2], b[3], b[4]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::default_config();
        assert_eq!(c.interfaces.len(), 2);
        assert!(c
            .interfaces
            .iter()
            .all(|i| !i.v4.is_empty() && !i.v6.is_empty()));
    }

    fn error(text: &str) -> String {
        match Config::parse("t.toml", text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let base = "[[interface]]\nname = \"a0\"\naddresses = [\"192.0.2.1/24\"]\n";
        assert_eq!(
            error(&format!("{base}mtu = 9000\n")),
            "t.toml:4: interface[0].mtu: 9000 is outside 68..=2034"
        );
        assert_eq!(
            error("[[interface]]\nname = \"a0\"\naddresses = [\"192.0.2.1\"]\n"),
            "t.toml:3: interface[0].addresses[0]: \"192.0.2.1\" is not an address with a prefix length (like 192.0.2.1/24)"
        );
        assert_eq!(
            error(&format!("{base}\n[[route]]\nprefix = \"198.51.100.1/24\"\nvia = \"192.0.2.2\"\n")),
            "t.toml:6: route[0].prefix: 198.51.100.1/24 has host bits set (did you mean 198.51.100.0/24?)"
        );
        assert_eq!(
            error(&format!(
                "{base}\n[[route]]\nprefix = \"198.51.100.0/24\"\nvia = \"2001:db8::1\"\n"
            )),
            "t.toml:7: route[0].via: 2001:db8::1 is not of the same family as 198.51.100.0/24"
        );
        assert_eq!(
            error(&format!("{base}\n[[neighbor]]\ninterface = \"b0\"\naddress = \"192.0.2.2\"\nmac = \"02:00:00:00:00:01\"\n")),
            "t.toml:6: neighbor[0].interface: no interface is named \"b0\""
        );
        assert_eq!(
            error(&format!("{base}\n[[neighbor]]\ninterface = \"a0\"\naddress = \"192.0.2.2\"\nmac = \"01:00:00:00:00:01\"\n")),
            "t.toml:8: neighbor[0].mac: \"01:00:00:00:00:01\" is not a unicast MAC address"
        );
        assert!(
            error(&format!("{base}bogus = 1\n")).starts_with("t.toml:4: unknown field `bogus`"),
            "{}",
            error(&format!("{base}bogus = 1\n"))
        );
        assert!(error("[dataplane]\nworkers = 1\n").contains("no [[interface]]"));
    }

    #[test]
    fn nat_errors_name_file_line_and_field() {
        let base = "[[interface]]\nname = \"in\"\naddresses = [\"192.0.2.1/24\"]\n\n\
                    [[interface]]\nname = \"out\"\naddresses = [\"203.0.113.1/24\"]\n\n\
                    [nat]\ninside = [\"in\"]\noutside = [\"out\"]\n\n\
                    [[nat.forward]]\nname = \"web\"\nproto = \"tcp\"\n\
                    external = \"203.0.113.1:8080\"\nbackends = [\"192.0.2.10:80\"]\n";
        let checked = Config::parse("t.toml", &format!("{base}check = \"tcp\"\n")).expect("valid");
        let nat = checked.nat.as_ref().expect("nat");
        assert_eq!(nat.checks.len(), 1);
        assert_eq!(nat.checks[0].frontend, "web");
        assert_eq!(nat.checks[0].interval, Duration::from_secs(1));
        assert_eq!((nat.checks[0].fall, nat.checks[0].rise), (3, 2));
        assert!(
            checked.host_interfaces,
            "a check turns the host interfaces on"
        );
        assert_eq!(
            error(&format!("{base}check = \"icmp\"\n")),
            "t.toml:18: nat.forward[0].check: \"icmp\" is not a health check (tcp)"
        );
        assert_eq!(
            error(&format!(
                "{base}check = \"tcp\"\ncheck_interval_ms = 200\ncheck_timeout_ms = 300\n"
            )),
            "t.toml:20: nat.forward[0].check_timeout_ms: is longer than check_interval_ms"
        );
        assert_eq!(
            error(&format!("{base}check = \"tcp\"\ncheck_fall = 0\n")),
            "t.toml:19: nat.forward[0].check_fall: 0 is outside 1..=100"
        );
        assert_eq!(
            error(&format!(
                "[control]\nhost_interfaces = false\n\n{base}check = \"tcp\"\n"
            )),
            "t.toml:2: control.host_interfaces: is false, but NAT backend health checks connect \
             through the host interfaces"
        );
    }

    #[test]
    fn route_files_load_every_prefix_and_errors_name_the_route_file_line() {
        let dir = std::env::temp_dir().join(format!("tern-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("good.txt"),
            "# two prefixes\n198.51.100.0/24\n\n198.18.0.0/15  # a comment\n",
        )
        .expect("write");
        std::fs::write(dir.join("bad.txt"), "198.51.100.0/24\n198.51.100.7/24\n").expect("write");
        let config = dir.join("t.toml").display().to_string();
        let base = "[[interface]]\nname = \"a0\"\naddresses = [\"192.0.2.1/24\"]\n\n[[route]]\nvia = \"192.0.2.2\"\n";
        let ok = Config::parse(&config, &format!("{base}file = \"good.txt\"\n")).expect("valid");
        let prefixes: Vec<String> = ok.routes.iter().map(|r| r.prefix.to_string()).collect();
        assert_eq!(prefixes, ["198.51.100.0/24", "198.18.0.0/15"]);
        let err =
            Config::parse(&config, &format!("{base}file = \"bad.txt\"\n")).expect_err("host bits");
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: 198.51.100.7/24 has host bits set (did you mean 198.51.100.0/24?)",
                dir.join("bad.txt").display()
            )
        );
        assert_eq!(
            error(&format!(
                "{base}prefix = \"198.51.100.0/24\"\nfile = \"good.txt\"\n"
            )),
            "t.toml:6: route[0]: needs exactly one of `prefix` and `file`"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tunnel_errors_name_file_line_and_field() {
        let base = "[[interface]]\nname = \"a0\"\naddresses = [\"192.0.2.1/24\"]\n\n[[tunnel]]\nname = \"t0\"\n";
        assert_eq!(
            error(&format!(
                "{base}kind = \"vxlan\"\nlocal = \"192.0.2.1\"\nremote = \"198.18.0.1\"\n"
            )),
            "t.toml:7: tunnel[0].kind: \"vxlan\" is not a tunnel kind (ipip, gre, 6in4, gre6)"
        );
        assert_eq!(
            error(&format!(
                "{base}kind = \"gre\"\nlocal = \"192.0.2.9\"\nremote = \"198.18.0.1\"\n"
            )),
            "t.toml:8: tunnel[0].local: 192.0.2.9 is not an address of any interface"
        );
        assert_eq!(
            error(&format!(
                "{base}kind = \"ipip\"\nlocal = \"192.0.2.1\"\nremote = \"198.18.0.1\"\nkey = 5\n"
            )),
            "t.toml:6: tunnel[0]: key: only GRE tunnels have a key"
        );
        assert_eq!(
            error(&format!("{base}kind = \"gre\"\nlocal = \"192.0.2.1\"\nremote = \"198.18.0.1\"\nttl = \"copy\"\n")),
            "t.toml:10: tunnel[0].ttl: \"copy\" is neither \"inherit\" nor a number in 0..=255"
        );
        let ok = Config::parse(
            "t.toml",
            &format!("{base}kind = \"gre\"\nlocal = \"192.0.2.1\"\nremote = \"198.18.0.1\"\nkey = 7\n\n[[route]]\nprefix = \"198.51.100.0/24\"\ninterface = \"t0\"\n"),
        )
        .expect("valid");
        assert_eq!(
            ok.tunnels[0].mtu,
            1500 - 28,
            "default MTU leaves room for IPv4 + GRE with key"
        );
        assert_eq!(ok.routes[0].tunnel, Some(0));
    }
}
