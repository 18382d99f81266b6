//! The `[bgp]` section: the speaker and its peers.
//!
//! ```toml
//! [bgp]
//! router_id = "192.0.2.1"
//! local_as = 65000
//! listen_port = 179                  # 0: no listener (active sessions only)
//! multipath = 4                      # next hops per prefix; 1 = best path only
//! announce = ["198.18.100.0/24"]     # next hop self, withdrawn while unhealthy
//! [[bgp.peer]]
//! name = "upstream"
//! address = "192.0.2.2"
//! remote_as = 65001
//! passive = false                    # true: wait for the peer to connect
//! hold_time = 90                     # seconds; 0 or 3..=65535
//! connect_retry = 5                  # seconds
//! families = ["ipv4"]                # default: the address's family
//! import = ["198.18.0.0/15 le 24"]   # or "all" / "none"; eBGP default "none" (RFC 8212)
//! max_prefixes = 1200000
//! graceful_restart = true            # helper for the peer's restarts
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use bgp_glue::{BgpConfig, Family, Import, PeerConfig, PrefixRule};
use serde::Deserialize;
use toml::Spanned;

use super::{int_in as int, At, ConfigError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBgp {
    router_id: Spanned<String>,
    local_as: Spanned<i64>,
    listen_port: Option<Spanned<i64>>,
    multipath: Option<Spanned<i64>>,
    #[serde(default)]
    announce: Vec<Spanned<String>>,
    #[serde(default)]
    peer: Vec<RawPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: Option<Spanned<String>>,
    address: Spanned<String>,
    remote_as: Spanned<i64>,
    port: Option<Spanned<i64>>,
    passive: Option<bool>,
    hold_time: Option<Spanned<i64>>,
    connect_retry: Option<Spanned<i64>>,
    families: Option<Vec<Spanned<String>>>,
    import: Option<Spanned<toml::Value>>,
    max_prefixes: Option<Spanned<i64>>,
    graceful_restart: Option<bool>,
    stale_time: Option<Spanned<i64>>,
    next_hop_v6: Option<Spanned<String>>,
}

pub(super) fn parse(raw: &RawBgp, at: At) -> Result<BgpConfig, ConfigError> {
    let router_id: Ipv4Addr = raw.router_id.get_ref().parse().map_err(|_| {
        at(
            raw.router_id.span(),
            "bgp.router_id",
            format!("{:?} is not an IPv4 address", raw.router_id.get_ref()),
        )
    })?;
    if router_id.is_unspecified() {
        return Err(at(
            raw.router_id.span(),
            "bgp.router_id",
            "0.0.0.0 is not a router id".into(),
        ));
    }
    let local_as = int(
        at,
        &Some(raw.local_as.clone()),
        "bgp.local_as",
        1,
        u32::MAX as i64,
        0,
    )? as u32;
    let listen_port = int(at, &raw.listen_port, "bgp.listen_port", 0, 65535, 179)? as u16;
    let multipath = int(at, &raw.multipath, "bgp.multipath", 1, 64, 1)? as usize;
    let mut announce = Vec::new();
    for (i, a) in raw.announce.iter().enumerate() {
        let net = super::parse_prefix(a.get_ref())
            .map_err(|m| at(a.span(), &format!("bgp.announce[{i}]"), m))?;
        announce.push(net);
    }
    let mut peers: Vec<PeerConfig> = Vec::new();
    for (i, p) in raw.peer.iter().enumerate() {
        let field = |f: &str| format!("bgp.peer[{i}].{f}");
        let address: IpAddr = p.address.get_ref().parse().map_err(|_| {
            at(
                p.address.span(),
                &field("address"),
                format!("{:?} is not an address", p.address.get_ref()),
            )
        })?;
        if peers.iter().any(|q| q.address == address) {
            return Err(at(
                p.address.span(),
                &field("address"),
                format!("{address} is already a peer"),
            ));
        }
        let remote_as = int(
            at,
            &Some(p.remote_as.clone()),
            &field("remote_as"),
            1,
            u32::MAX as i64,
            0,
        )? as u32;
        let name = p
            .name
            .as_ref()
            .map(|n| n.get_ref().clone())
            .unwrap_or_else(|| address.to_string());
        let mut peer = PeerConfig::new(&name, address, remote_as, local_as);
        peer.port = int(at, &p.port, &field("port"), 1, 65535, 179)? as u16;
        peer.passive = p.passive.unwrap_or(false);
        peer.hold_time = int(at, &p.hold_time, &field("hold_time"), 0, 65535, 90)? as u16;
        if peer.hold_time == 1 || peer.hold_time == 2 {
            let span = p.hold_time.as_ref().map(|h| h.span()).unwrap_or(0..0);
            return Err(at(
                span,
                &field("hold_time"),
                "must be 0 or at least 3 seconds (RFC 4271 §4.2)".into(),
            ));
        }
        peer.connect_retry =
            Duration::from_secs(
                int(at, &p.connect_retry, &field("connect_retry"), 1, 3600, 5)? as u64,
            );
        peer.stale_time =
            Duration::from_secs(int(at, &p.stale_time, &field("stale_time"), 1, 3600, 360)? as u64);
        if let Some(fams) = &p.families {
            peer.families = Vec::new();
            for f in fams {
                peer.families.push(match f.get_ref().as_str() {
                    "ipv4" => Family::Ipv4,
                    "ipv6" => Family::Ipv6,
                    other => {
                        return Err(at(
                            f.span(),
                            &field("families"),
                            format!("{other:?} is not ipv4 or ipv6"),
                        ))
                    }
                });
            }
        }
        if let Some(imp) = &p.import {
            peer.import = import(imp, at, &field("import"))?;
        }
        if let Some(m) = &p.max_prefixes {
            peer.max_prefixes = Some(int(
                at,
                &Some(m.clone()),
                &field("max_prefixes"),
                1,
                100_000_000,
                1,
            )? as usize);
        }
        peer.graceful_restart = p.graceful_restart.unwrap_or(true);
        if let Some(nh) = &p.next_hop_v6 {
            let a: Ipv6Addr = nh.get_ref().parse().map_err(|_| {
                at(
                    nh.span(),
                    &field("next_hop_v6"),
                    format!("{:?} is not an IPv6 address", nh.get_ref()),
                )
            })?;
            peer.next_hop_v6 = Some(a);
        }
        peers.push(peer);
    }
    Ok(BgpConfig {
        router_id,
        local_as,
        listen_port: (listen_port != 0).then_some(listen_port),
        multipath,
        announce,
        peers,
    })
}

fn import(v: &Spanned<toml::Value>, at: At, field: &str) -> Result<Import, ConfigError> {
    match v.get_ref() {
        toml::Value::String(s) if s == "all" => Ok(Import::All),
        toml::Value::String(s) if s == "none" => Ok(Import::Deny),
        toml::Value::Array(items) => {
            let mut rules = Vec::new();
            for item in items {
                let text = item
                    .as_str()
                    .ok_or_else(|| at(v.span(), field, "prefix rules are strings".into()))?;
                let rule = PrefixRule::parse(text).map_err(|m| at(v.span(), field, m))?;
                rules.push(rule);
            }
            Ok(Import::Prefixes(rules))
        }
        other => Err(at(
            v.span(),
            field,
            format!("{other} is not \"all\", \"none\" or a list of prefix rules"),
        )),
    }
}
