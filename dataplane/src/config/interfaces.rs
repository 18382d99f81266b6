//! The `[[interface]]` sections: the ports, their backends, addresses, MACs and MTUs.

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::buf::MAX_FRAME;

use super::{derived_mac, parse_mac, At, Backend, ConfigError, Int, Interface};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInterface {
    name: Spanned<String>,
    backend: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
}

pub(super) fn parse(
    raw: &[RawInterface],
    file: &str,
    at: At,
    int: Int,
) -> Result<Vec<Interface>, ConfigError> {
    let mut interfaces: Vec<Interface> = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let field = |f: &str| format!("interface[{i}].{f}");
        let name = r.name.get_ref().clone();
        if name.is_empty()
            || name.len() > 15
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(at(
                r.name.span(),
                &field("name"),
                format!("{name:?} is not a Linux interface name (1-15 of A-Z a-z 0-9 - _ .)"),
            ));
        }
        if interfaces.iter().any(|other| other.name == name) {
            return Err(at(
                r.name.span(),
                &field("name"),
                format!("{name:?} is configured twice"),
            ));
        }
        let backend = match r.backend.as_ref().map(|b| b.get_ref().as_str()) {
            None | Some("tap") => Backend::Tap,
            Some("memory") => Backend::Memory,
            Some("afxdp") => Backend::AfXdp,
            Some(other) => {
                let span = r.backend.as_ref().map(|b| b.span()).unwrap_or(0..0);
                return Err(at(
                    span,
                    &field("backend"),
                    format!("{other:?} is not a backend (tap, afxdp, memory)"),
                ));
            }
        };
        let mac = match &r.mac {
            Some(m) => parse_mac(m.get_ref()).ok_or_else(|| {
                at(
                    m.span(),
                    &field("mac"),
                    format!("{:?} is not a unicast MAC address", m.get_ref()),
                )
            })?,
            None => derived_mac(&name),
        };
        let max_mtu = (MAX_FRAME - crate::wire::eth::LEN) as i64;
        let mtu = int(&r.mtu, &field("mtu"), 68, max_mtu, 1500)? as u16;
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (j, a) in r.addresses.iter().enumerate() {
            // A network on two ports would leave its hosts' port to chance.
            let parsed = a.get_ref().parse::<IpNet>();
            if let Ok(net) = parsed {
                let on = |other: &&Interface| other.networks().any(|n| n.trunc() == net.trunc());
                if let Some(other) = interfaces.iter().find(on) {
                    return Err(at(
                        a.span(),
                        &format!("interface[{i}].addresses[{j}]"),
                        format!(
                            "{} is already a network of interface {:?}",
                            net.trunc(),
                            other.name
                        ),
                    ));
                }
            }
            match parsed {
                Ok(IpNet::V4(n)) => v4.push(n),
                Ok(IpNet::V6(n)) => {
                    if mtu < 1280 {
                        return Err(at(
                            a.span(),
                            &format!("interface[{i}].addresses[{j}]"),
                            format!("IPv6 needs an MTU of at least 1280, the interface has {mtu}"),
                        ));
                    }
                    v6.push(n)
                }
                Err(_) => {
                    return Err(at(
                        a.span(),
                        &format!("interface[{i}].addresses[{j}]"),
                        format!(
                            "{:?} is not an address with a prefix length (like 192.0.2.1/24)",
                            a.get_ref()
                        ),
                    ))
                }
            }
        }
        interfaces.push(Interface {
            name,
            backend,
            mac,
            mtu,
            v4,
            v6,
        });
    }
    if interfaces.is_empty() {
        return Err(ConfigError {
            file: file.to_string(),
            line: 1,
            field: "interface".into(),
            message: "no [[interface]] is configured".into(),
        });
    }
    Ok(interfaces)
}

impl Interface {
    /// Its addresses with their prefix lengths, IPv4 then IPv6.
    pub fn networks(&self) -> impl Iterator<Item = IpNet> + '_ {
        let v4 = self.v4.iter().map(|&n| IpNet::V4(n));
        v4.chain(self.v6.iter().map(|&n| IpNet::V6(n)))
    }
}

/// The index of the interface `s` names, or an error at `s` naming `field`.
pub(super) fn find(
    interfaces: &[Interface],
    s: &Spanned<String>,
    field: &str,
    at: At,
) -> Result<usize, ConfigError> {
    interfaces
        .iter()
        .position(|i| &i.name == s.get_ref())
        .ok_or_else(|| {
            at(
                s.span(),
                field,
                format!("no interface is named {:?}", s.get_ref()),
            )
        })
}
