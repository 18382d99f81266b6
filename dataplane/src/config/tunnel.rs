//! The `[[tunnel]]` sections: IPIP, GRE, 6in4 and GRE6 endpoints on our addresses.

use std::net::IpAddr;

use serde::Deserialize;
use toml::Spanned;

use super::{At, ConfigError, Int, Interface};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTunnel {
    name: Spanned<String>,
    kind: Spanned<String>,
    local: Spanned<String>,
    remote: Spanned<String>,
    key: Option<Spanned<i64>>,
    #[serde(default)]
    sequence: bool,
    #[serde(default)]
    checksum: bool,
    /// "inherit" or 1..=255.
    ttl: Option<Spanned<toml::Value>>,
    /// "inherit" or 0..=63.
    dscp: Option<Spanned<toml::Value>>,
    mtu: Option<Spanned<i64>>,
}

pub(super) fn parse(
    raw: &[RawTunnel],
    interfaces: &[Interface],
    file: &str,
    at: At,
    int: Int,
) -> Result<Vec<tunnels::Spec>, ConfigError> {
    let mut tunnels: Vec<tunnels::Spec> = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let field = |f: &str| format!("tunnel[{i}].{f}");
        let name = t.name.get_ref().clone();
        if name.is_empty() || name.len() > 15 {
            return Err(at(
                t.name.span(),
                &field("name"),
                format!("{name:?} is not 1-15 characters"),
            ));
        }
        if interfaces.iter().any(|i| i.name == name) || tunnels.iter().any(|o| o.name == name) {
            return Err(at(
                t.name.span(),
                &field("name"),
                format!("{name:?} is already an interface or tunnel name"),
            ));
        }
        let kind = tunnels::Kind::parse(t.kind.get_ref()).ok_or_else(|| {
            at(
                t.kind.span(),
                &field("kind"),
                format!(
                    "{:?} is not a tunnel kind (ipip, gre, 6in4, gre6)",
                    t.kind.get_ref()
                ),
            )
        })?;
        let address = |s: &Spanned<String>, f: &str| -> Result<IpAddr, ConfigError> {
            s.get_ref().parse().map_err(|_| {
                at(
                    s.span(),
                    &field(f),
                    format!("{:?} is not an address", s.get_ref()),
                )
            })
        };
        let local = address(&t.local, "local")?;
        let remote = address(&t.remote, "remote")?;
        let ours = interfaces.iter().any(|i| match local {
            IpAddr::V4(a) => i.v4.iter().any(|n| n.addr() == a),
            IpAddr::V6(a) => i.v6.iter().any(|n| n.addr() == a),
        });
        if !ours {
            return Err(at(
                t.local.span(),
                &field("local"),
                format!("{local} is not an address of any interface"),
            ));
        }
        let key = match &t.key {
            None => None,
            Some(k) => Some(u32::try_from(*k.get_ref()).map_err(|_| {
                at(
                    k.span(),
                    &field("key"),
                    format!("{} is outside 0..=4294967295", k.get_ref()),
                )
            })?),
        };
        let inherit_or = |v: &Option<Spanned<toml::Value>>,
                          f: &str,
                          max: i64,
                          default: Option<u8>|
         -> Result<Option<u8>, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) => match s.get_ref() {
                    toml::Value::String(w) if w == "inherit" => Ok(None),
                    toml::Value::Integer(n) if (0..=max).contains(n) => Ok(Some(*n as u8)),
                    other => Err(at(
                        s.span(),
                        &field(f),
                        format!("{other} is neither \"inherit\" nor a number in 0..={max}"),
                    )),
                },
            }
        };
        let ttl = match inherit_or(&t.ttl, "ttl", 255, Some(64))? {
            None => tunnels::Ttl::Inherit,
            Some(n) => tunnels::Ttl::Fixed(n),
        };
        let dscp = match inherit_or(&t.dscp, "dscp", 63, None)? {
            None => tunnels::Dscp::Inherit,
            Some(n) => tunnels::Dscp::Fixed(n),
        };
        let mut spec = tunnels::Spec {
            name,
            kind,
            local,
            remote,
            key,
            sequence: t.sequence,
            checksum: t.checksum,
            ttl,
            dscp,
            mtu: 0,
        };
        let default_mtu = 1500 - spec.overhead() as i64;
        spec.mtu = int(&t.mtu, &field("mtu"), 68, 1500, default_mtu)? as u16;
        spec.validate()
            .map_err(|e| at(t.name.span(), &format!("tunnel[{i}]"), e))?;
        tunnels.push(spec);
    }
    if let Err(e) = tunnels::TunnelTable::new(tunnels.clone()) {
        return Err(ConfigError {
            file: file.to_string(),
            line: 1,
            field: "tunnel".into(),
            message: e,
        });
    }
    Ok(tunnels)
}
