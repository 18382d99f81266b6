//! The `[nat]` section: interface roles, external addresses, filtering, timeouts, quotas
//! and DNAT frontends (`[[nat.forward]]`).
//!
//! ```toml
//! [nat]
//! inside = ["tern0"]
//! outside = ["tern1"]
//! pool = ["203.0.113.10"]          # optional: masquerade to the egress address without
//! filtering = "address-dependent"  # | endpoint-independent | address-and-port-dependent
//! capacity = 65536                 # sessions per worker, preallocated
//! [nat.timeouts]                   # seconds; the RFC minimums are enforced
//! udp = 300
//! [[nat.forward]]
//! name = "web"
//! proto = "tcp"
//! external = "203.0.113.1:8080"
//! backends = ["192.0.2.10:80"]     # several: Maglev load balancing
//! check = "tcp"                    # optional: health-check the backends by connecting
//! check_interval_ms = 1000         # how often; a connect may take check_timeout_ms (500)
//! check_fall = 3                   # failures in a row that take a backend out
//! check_rise = 2                   # successes in a row that put it back
//! ```

use std::net::Ipv4Addr;

use serde::Deserialize;
use toml::Spanned;

use super::{At, ConfigError, Interface};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNat {
    #[serde(default)]
    inside: Vec<Spanned<String>>,
    outside: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pool: Vec<Spanned<String>>,
    filtering: Option<Spanned<String>>,
    capacity: Option<Spanned<i64>>,
    max_sessions_per_host: Option<Spanned<i64>>,
    max_ports_per_host: Option<Spanned<i64>>,
    #[serde(default)]
    timeouts: RawTimeouts,
    #[serde(default)]
    forward: Vec<RawForward>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    udp: Option<Spanned<i64>>,
    tcp_established: Option<Spanned<i64>>,
    tcp_transitory: Option<Spanned<i64>>,
    icmp: Option<Spanned<i64>>,
    other: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    name: Spanned<String>,
    proto: Spanned<String>,
    external: Spanned<String>,
    backends: Spanned<Vec<Spanned<String>>>,
    check: Option<Spanned<String>>,
    check_interval_ms: Option<Spanned<i64>>,
    check_timeout_ms: Option<Spanned<i64>>,
    check_fall: Option<Spanned<i64>>,
    check_rise: Option<Spanned<i64>>,
}

/// A frontend whose backends the control plane health-checks (`check = "tcp"`).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendCheck {
    pub frontend: String,
    pub backends: Vec<nat::Endpoint>,
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    pub fall: u32,
    pub rise: u32,
}

/// The validated NAT configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NatConfig {
    /// Interface slots (ports, then tunnels) with the inside / outside role.
    pub inside: Vec<usize>,
    pub outside: Vec<usize>,
    /// The rules (with seed 0: the router seeds them at start).
    pub rules: nat::Rules,
    /// Frontends with health-checked backends.
    pub checks: Vec<BackendCheck>,
}

pub(super) fn parse(
    raw: &RawNat,
    interfaces: &[Interface],
    tunnels: &[tunnels::Spec],
    at: At,
) -> Result<NatConfig, ConfigError> {
    let slot = |s: &Spanned<String>, field: &str| -> Result<usize, ConfigError> {
        let name = s.get_ref();
        if let Some(i) = interfaces.iter().position(|i| &i.name == name) {
            return Ok(i);
        }
        if let Some(t) = tunnels.iter().position(|t| &t.name == name) {
            return Ok(interfaces.len() + t);
        }
        Err(at(
            s.span(),
            field,
            format!("no interface or tunnel is named {name:?}"),
        ))
    };
    let mut inside = Vec::new();
    for (i, s) in raw.inside.iter().enumerate() {
        inside.push(slot(s, &format!("nat.inside[{i}]"))?);
    }
    let mut outside = Vec::new();
    for (i, s) in raw.outside.get_ref().iter().enumerate() {
        let n = slot(s, &format!("nat.outside[{i}]"))?;
        if inside.contains(&n) {
            return Err(at(
                s.span(),
                &format!("nat.outside[{i}]"),
                format!("{:?} is also inside", s.get_ref()),
            ));
        }
        outside.push(n);
    }
    if outside.is_empty() {
        return Err(at(
            raw.outside.span(),
            "nat.outside",
            "names no interface".into(),
        ));
    }
    let mut rules = nat::Rules::new(0);
    for (i, p) in raw.pool.iter().enumerate() {
        let a: Ipv4Addr = p.get_ref().parse().map_err(|_| {
            at(
                p.span(),
                &format!("nat.pool[{i}]"),
                format!("{:?} is not an IPv4 address", p.get_ref()),
            )
        })?;
        rules.pool.push(a.into());
    }
    if rules.pool.len() > 256 {
        return Err(at(
            raw.pool[256].span(),
            "nat.pool",
            "more than 256 addresses".into(),
        ));
    }
    if rules.pool.is_empty() {
        for (i, &n) in outside.iter().enumerate() {
            if masquerade_address(n, interfaces, tunnels).is_none() {
                return Err(at(
                    raw.outside.get_ref()[i].span(),
                    &format!("nat.outside[{i}]"),
                    "has no IPv4 address to masquerade to, and no nat.pool is set".into(),
                ));
            }
        }
    }
    if let Some(f) = &raw.filtering {
        rules.filtering = nat::Filtering::parse(f.get_ref()).ok_or_else(|| {
            at(
                f.span(),
                "nat.filtering",
                format!(
                    "{:?} is not endpoint-independent, address-dependent or address-and-port-dependent",
                    f.get_ref()
                ),
            )
        })?;
    }
    let int = |v: &Option<Spanned<i64>>, field: &str, min: i64, max: i64, default: i64| {
        super::int_in(at, v, field, min, max, default)
    };
    rules.capacity = int(&raw.capacity, "nat.capacity", 16, 1 << 24, 1 << 16)? as usize;
    rules.max_sessions_per_host = int(
        &raw.max_sessions_per_host,
        "nat.max_sessions_per_host",
        0,
        1 << 24,
        0,
    )? as u32;
    rules.max_ports_per_host = int(
        &raw.max_ports_per_host,
        "nat.max_ports_per_host",
        0,
        65535,
        nat::rules::DEFAULT_PORTS_PER_HOST as i64,
    )? as u32;
    let t = &raw.timeouts;
    let d = nat::rules::DEFAULT_TIMEOUTS;
    let secs = |v: &Option<Spanned<i64>>, field: &str, min_ms: u64, default_ms: u64| {
        int(
            v,
            field,
            (min_ms / 1000) as i64,
            1 << 30,
            (default_ms / 1000) as i64,
        )
        .map(|s| s as u64 * 1000)
    };
    rules.timeouts.udp = secs(&t.udp, "nat.timeouts.udp", nat::rules::MIN_UDP, d.udp)?;
    rules.timeouts.tcp_established = secs(
        &t.tcp_established,
        "nat.timeouts.tcp_established",
        nat::rules::MIN_TCP_ESTABLISHED,
        d.tcp_established,
    )?;
    rules.timeouts.tcp_transitory = secs(
        &t.tcp_transitory,
        "nat.timeouts.tcp_transitory",
        nat::rules::MIN_TCP_TRANSITORY,
        d.tcp_transitory,
    )?;
    rules.timeouts.icmp = secs(&t.icmp, "nat.timeouts.icmp", nat::rules::MIN_ICMP, d.icmp)?;
    rules.timeouts.other = secs(&t.other, "nat.timeouts.other", 60_000, d.other)?;

    let mut checks = Vec::new();
    for (i, f) in raw.forward.iter().enumerate() {
        let field = |x: &str| format!("nat.forward[{i}].{x}");
        let proto = nat::flow::frontend_proto(f.proto.get_ref()).ok_or_else(|| {
            at(
                f.proto.span(),
                &field("proto"),
                format!("{:?} is not tcp or udp", f.proto.get_ref()),
            )
        })?;
        let endpoint = |s: &Spanned<String>, name: &str| {
            s.get_ref()
                .parse::<nat::Endpoint>()
                .map_err(|e| at(s.span(), name, e))
        };
        let external = endpoint(&f.external, &field("external"))?;
        let mut backends = Vec::new();
        for (j, b) in f.backends.get_ref().iter().enumerate() {
            backends.push(endpoint(b, &format!("nat.forward[{i}].backends[{j}]"))?);
        }
        if let Some(c) = &f.check {
            if c.get_ref() != "tcp" {
                return Err(at(
                    c.span(),
                    &field("check"),
                    format!("{:?} is not a health check (tcp)", c.get_ref()),
                ));
            }
            let ms = |v: &Option<Spanned<i64>>, name: &str, min: i64, max: i64, default: i64| {
                int(v, &field(name), min, max, default)
                    .map(|n| std::time::Duration::from_millis(n as u64))
            };
            let interval = ms(
                &f.check_interval_ms,
                "check_interval_ms",
                100,
                600_000,
                1000,
            )?;
            let timeout = ms(&f.check_timeout_ms, "check_timeout_ms", 10, 60_000, 500)?;
            if timeout > interval {
                let span = f.check_timeout_ms.as_ref().map_or(c.span(), |t| t.span());
                return Err(at(
                    span,
                    &field("check_timeout_ms"),
                    "is longer than check_interval_ms".into(),
                ));
            }
            checks.push(BackendCheck {
                frontend: f.name.get_ref().clone(),
                backends: backends.clone(),
                interval,
                timeout,
                fall: int(&f.check_fall, &field("check_fall"), 1, 100, 3)? as u32,
                rise: int(&f.check_rise, &field("check_rise"), 1, 100, 2)? as u32,
            });
        }
        let frontend = nat::Frontend::new(f.name.get_ref().clone(), proto, external, backends);
        if rules.frontends.iter().any(|o| o.name == frontend.name) {
            return Err(at(
                f.name.span(),
                &field("name"),
                format!("{:?} is configured twice", f.name.get_ref()),
            ));
        }
        rules
            .add_frontend(frontend)
            .map_err(|e| at(f.external.span(), &field("external"), e))?;
    }
    Ok(NatConfig {
        inside,
        outside,
        rules,
        checks,
    })
}

/// The address SNAT uses leaving by interface slot `n` when there is no pool: the
/// interface's first IPv4 address, or a tunnel's IPv4 local address.
pub fn masquerade_address(
    n: usize,
    interfaces: &[Interface],
    tunnels: &[tunnels::Spec],
) -> Option<u32> {
    match interfaces.get(n) {
        Some(i) => i.v4.first().map(|a| a.addr().into()),
        None => match tunnels.get(n - interfaces.len())?.local {
            std::net::IpAddr::V4(a) => Some(a.into()),
            _ => None,
        },
    }
}

impl NatConfig {
    /// Every address the NAT answers for: the pool, the masquerade addresses and the
    /// frontends' addresses.
    pub fn external_addresses(
        &self,
        interfaces: &[Interface],
        tunnels: &[tunnels::Spec],
    ) -> Vec<u32> {
        let mut v = self.rules.pool.clone();
        v.extend(
            self.outside
                .iter()
                .filter_map(|&n| masquerade_address(n, interfaces, tunnels)),
        );
        v.extend(self.rules.frontends.iter().map(|f| f.external.addr));
        v.sort_unstable();
        v.dedup();
        v
    }
}
