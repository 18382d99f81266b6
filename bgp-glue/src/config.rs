//! The validated BGP configuration (the TOML side lives in `dataplane::config`, which names
//! file and line in its errors).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use crate::codec::Family;

#[derive(Debug, Clone, PartialEq)]
pub struct BgpConfig {
    pub router_id: Ipv4Addr,
    pub local_as: u32,
    /// TCP port to listen on (179); `None`: no listener, active sessions only.
    pub listen_port: Option<u16>,
    /// Most next hops per prefix (1: no multipath).
    pub multipath: usize,
    /// Prefixes tern announces, next hop self, while the dataplane is healthy.
    pub announce: Vec<IpNet>,
    pub peers: Vec<PeerConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    pub name: String,
    pub address: IpAddr,
    pub remote_as: u32,
    /// The peer's TCP port for sessions tern opens.
    pub port: u16,
    /// Wait for the peer to connect; never connect.
    pub passive: bool,
    pub hold_time: u16,
    pub connect_retry: Duration,
    pub families: Vec<Family>,
    pub import: Import,
    /// Session ends with Cease/1 when the peer sends more accepted prefixes than this.
    pub max_prefixes: Option<usize>,
    /// Act as graceful-restart helper (RFC 4724) for this peer.
    pub graceful_restart: bool,
    /// Longest time the peer's routes are kept stale after it comes back without
    /// End-of-RIB.
    pub stale_time: Duration,
    /// IPv6 next hop to announce when the session runs over IPv4.
    pub next_hop_v6: Option<Ipv6Addr>,
}

impl PeerConfig {
    /// A peer with the usual defaults: active, hold 90 s, retry 5 s, its address's family,
    /// import as RFC 8212 wants (nothing from an external peer without a policy).
    pub fn new(name: &str, address: IpAddr, remote_as: u32, local_as: u32) -> PeerConfig {
        PeerConfig {
            name: name.to_string(),
            address,
            remote_as,
            port: 179,
            passive: false,
            hold_time: 90,
            connect_retry: Duration::from_secs(5),
            families: vec![match address {
                IpAddr::V4(_) => Family::Ipv4,
                IpAddr::V6(_) => Family::Ipv6,
            }],
            import: if remote_as == local_as {
                Import::All
            } else {
                Import::Deny
            },
            max_prefixes: None,
            graceful_restart: true,
            stale_time: Duration::from_secs(360),
            next_hop_v6: None,
        }
    }
}

/// Import policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Import {
    All,
    /// Nothing (RFC 8212's default for external peers with no policy).
    Deny,
    /// Prefixes inside one of these, with a length in its range.
    Prefixes(Vec<PrefixRule>),
}

/// `net` with lengths `ge..=le`, as in `198.18.0.0/15 le 24`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixRule {
    pub net: IpNet,
    pub ge: u8,
    pub le: u8,
}

impl PrefixRule {
    /// Parses `NET`, `NET le N`, `NET ge N`, `NET ge N le M`.
    pub fn parse(text: &str) -> Result<PrefixRule, String> {
        let mut words = text.split_whitespace();
        let net: IpNet = words
            .next()
            .ok_or("empty prefix rule")?
            .parse()
            .map_err(|_| format!("{text:?} does not start with a prefix"))?;
        let mut rule = PrefixRule {
            net: net.trunc(),
            ge: net.prefix_len(),
            le: net.prefix_len(),
        };
        let max = net.max_prefix_len();
        while let Some(w) = words.next() {
            let n: u8 = words
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{text:?}: {w} needs a length up to {max}"))?;
            match w {
                "le" => rule.le = n,
                "ge" => {
                    rule.ge = n;
                    rule.le = rule.le.max(n);
                }
                _ => return Err(format!("{text:?}: expected le or ge, found {w}")),
            }
        }
        if rule.ge < net.prefix_len() || rule.le < rule.ge {
            return Err(format!("{text:?}: lengths out of order"));
        }
        Ok(rule)
    }

    pub fn matches(&self, prefix: &IpNet) -> bool {
        self.net.contains(prefix) && (self.ge..=self.le).contains(&prefix.prefix_len())
    }
}

impl Import {
    pub fn accepts(&self, prefix: &IpNet) -> bool {
        match self {
            Import::All => true,
            Import::Deny => false,
            Import::Prefixes(rules) => rules.iter().any(|r| r.matches(prefix)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rules() {
        let r = PrefixRule::parse("198.18.0.0/15 le 24").unwrap();
        assert!(r.matches(&"198.18.0.0/15".parse().unwrap()));
        assert!(r.matches(&"198.19.7.0/24".parse().unwrap()));
        assert!(!r.matches(&"198.19.7.0/25".parse().unwrap()));
        assert!(!r.matches(&"198.20.0.0/24".parse().unwrap()));
        let exact = PrefixRule::parse("2001:db8::/32").unwrap();
        assert!(exact.matches(&"2001:db8::/32".parse().unwrap()));
        assert!(!exact.matches(&"2001:db8::/48".parse().unwrap()));
        assert!(PrefixRule::parse("10.0.0.0/8 le 40").is_err());
        assert!(PrefixRule::parse("10.0.0.0/8 ge 4").is_err());
        assert!(PrefixRule::parse("nonsense").is_err());
    }
}
