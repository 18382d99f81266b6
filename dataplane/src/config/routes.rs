//! The `[[route]]` and `[[neighbor]]` sections: static routes (one prefix, or a file of
//! them) and static neighbours.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use super::{
    interfaces, parse_mac, parse_prefix, At, ConfigError, Interface, StaticNeighbor, StaticRoute,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    prefix: Option<Spanned<String>>,
    /// A file of prefixes, one per line, all with this route's `via` / `interface`.
    file: Option<Spanned<String>>,
    via: Option<Spanned<String>>,
    interface: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNeighbor {
    interface: Spanned<String>,
    address: Spanned<String>,
    mac: Spanned<String>,
}

pub(super) fn parse_routes(
    raw: &[RawRoute],
    interfaces: &[Interface],
    tunnels: &[tunnels::Spec],
    file: &str,
    at: At,
) -> Result<Vec<StaticRoute>, ConfigError> {
    let mut routes = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let (prefixes, span) = match (&r.prefix, &r.file) {
            (Some(p), None) => {
                let prefix = parse_prefix(p.get_ref())
                    .map_err(|message| at(p.span(), &format!("route[{i}].prefix"), message))?;
                (vec![prefix], p.span())
            }
            (None, Some(f)) => {
                let path = relative_to(file, f.get_ref());
                let prefixes = read_prefix_file(&path)?;
                (prefixes, f.span())
            }
            _ => {
                let span = r.via.as_ref().or(r.interface.as_ref()).map(|s| s.span());
                return Err(at(
                    span.unwrap_or(0..0),
                    &format!("route[{i}]"),
                    "needs exactly one of `prefix` and `file`".into(),
                ));
            }
        };
        let via = match &r.via {
            None => None,
            Some(v) => {
                let addr: IpAddr = v.get_ref().parse().map_err(|_| {
                    at(
                        v.span(),
                        &format!("route[{i}].via"),
                        format!("{:?} is not an address", v.get_ref()),
                    )
                })?;
                if let Some(other) = prefixes
                    .iter()
                    .find(|p| p.addr().is_ipv4() != addr.is_ipv4())
                {
                    return Err(at(
                        v.span(),
                        &format!("route[{i}].via"),
                        format!("{addr} is not of the same family as {other}"),
                    ));
                }
                let own = |i: &&Interface| i.networks().any(|n| n.addr() == addr);
                if let Some(port) = interfaces.iter().find(own) {
                    return Err(at(
                        v.span(),
                        &format!("route[{i}].via"),
                        format!("{addr} is tern's own address (interface {:?})", port.name),
                    ));
                }
                let on_link = |i: &Interface| i.networks().any(|n| n.contains(&addr));
                if r.interface.is_none() && !interfaces.iter().any(on_link) {
                    return Err(at(
                        v.span(),
                        &format!("route[{i}].via"),
                        format!("gateway {addr} is not on a connected network"),
                    ));
                }
                Some(addr)
            }
        };
        let tunnel = r
            .interface
            .as_ref()
            .and_then(|s| tunnels.iter().position(|t| &t.name == s.get_ref()));
        let interface = match tunnel {
            Some(_) => None,
            None => r
                .interface
                .as_ref()
                .map(|s| interfaces::find(interfaces, s, &format!("route[{i}].interface"), at))
                .transpose()?,
        };
        if let (Some(t), Some(v)) = (tunnel, &r.via) {
            return Err(at(
                v.span(),
                &format!("route[{i}].via"),
                format!("a route into tunnel {:?} has no gateway", tunnels[t].name),
            ));
        }
        if via.is_none() && interface.is_none() && tunnel.is_none() {
            return Err(at(
                span,
                &format!("route[{i}]"),
                "needs `via` (a gateway) or `interface` (on-link)".into(),
            ));
        }
        routes.extend(prefixes.into_iter().map(|prefix| StaticRoute {
            prefix,
            via,
            interface,
            tunnel,
        }));
    }
    Ok(routes)
}

pub(super) fn parse_neighbors(
    raw: &[RawNeighbor],
    interfaces: &[Interface],
    at: At,
) -> Result<Vec<StaticNeighbor>, ConfigError> {
    let mut neighbors = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        let interface = interfaces::find(
            interfaces,
            &n.interface,
            &format!("neighbor[{i}].interface"),
            at,
        )?;
        let address = n.address.get_ref().parse().map_err(|_| {
            at(
                n.address.span(),
                &format!("neighbor[{i}].address"),
                format!("{:?} is not an address", n.address.get_ref()),
            )
        })?;
        let mac = parse_mac(n.mac.get_ref()).ok_or_else(|| {
            at(
                n.mac.span(),
                &format!("neighbor[{i}].mac"),
                format!("{:?} is not a unicast MAC address", n.mac.get_ref()),
            )
        })?;
        neighbors.push(StaticNeighbor {
            interface,
            address,
            mac,
        });
    }
    Ok(neighbors)
}

/// `path` as written in config file `config`: relative paths start at the config's folder.
fn relative_to(config: &str, path: &str) -> std::path::PathBuf {
    let p = Path::new(path);
    match Path::new(config).parent() {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

/// A route file: one prefix per line; blank lines and `#` comments skipped. Errors name
/// the route file and its line.
fn read_prefix_file(path: &Path) -> Result<Vec<IpNet>, ConfigError> {
    let name = path.display().to_string();
    let error = |line: usize, message: String| ConfigError {
        file: name.clone(),
        line,
        field: String::new(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(0, format!("cannot read: {e}")))?;
    let mut prefixes = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        prefixes.push(parse_prefix(line).map_err(|m| error(n + 1, m))?);
    }
    Ok(prefixes)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error(text: &str) -> String {
        Config::parse("t.toml", text)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    const PORTS: &str = "[[interface]]\nname = \"a0\"\naddresses = [\"192.0.2.1/24\"]\n\n\
                         [[interface]]\nname = \"b0\"\naddresses = [\"203.0.113.1/24\"]\n";

    /// What `run` would refuse, `check-config` refuses, naming file, line and field.
    #[test]
    fn gateways_off_link_or_our_own_and_a_network_on_two_ports_are_refused() {
        let route = |via: &str| {
            format!("{PORTS}\n[[route]]\nprefix = \"198.51.100.0/24\"\nvia = \"{via}\"\n")
        };
        assert_eq!(
            error(&route("10.9.9.9")),
            "t.toml:11: route[0].via: gateway 10.9.9.9 is not on a connected network"
        );
        assert_eq!(
            error(&route("203.0.113.1")),
            "t.toml:11: route[0].via: 203.0.113.1 is tern's own address (interface \"b0\")"
        );
        assert_eq!(
            error(&route("203.0.113.2")),
            "",
            "a neighbour on b0 is fine"
        );
        let twice = PORTS.replace("203.0.113.1/24", "192.0.2.9/24");
        assert_eq!(
            error(&twice),
            "t.toml:7: interface[1].addresses[0]: 192.0.2.0/24 is already a network of interface \"a0\""
        );
    }
}
