//! What a tunnel is: its kind, endpoints and header options, as configured.

use std::net::IpAddr;

/// The encapsulations tern speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// IPv4 in IPv4, IP protocol 4 (RFC 2003).
    Ipip,
    /// IPv6 in IPv4, IP protocol 41 (RFC 4213, "6in4", Linux `sit`).
    SixInFour,
    /// GRE over IPv4, IP protocol 47 (RFC 2784, RFC 2890), carrying IPv4 or IPv6.
    Gre,
    /// GRE over IPv6, next header 47 (RFC 7676), carrying IPv4 or IPv6.
    Gre6,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ipip => "ipip",
            Kind::SixInFour => "6in4",
            Kind::Gre => "gre",
            Kind::Gre6 => "gre6",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "ipip" => Kind::Ipip,
            "6in4" | "sit" => Kind::SixInFour,
            "gre" => Kind::Gre,
            "gre6" | "ip6gre" => Kind::Gre6,
            _ => return None,
        })
    }

    /// Whether the outer header is IPv6.
    pub fn outer_v6(self) -> bool {
        self == Kind::Gre6
    }

    pub fn is_gre(self) -> bool {
        matches!(self, Kind::Gre | Kind::Gre6)
    }

    /// The IP protocol / next header of the outer packet.
    pub fn protocol(self) -> u8 {
        match self {
            Kind::Ipip => crate::PROTO_IPIP,
            Kind::SixInFour => crate::PROTO_IPV6,
            Kind::Gre | Kind::Gre6 => crate::PROTO_GRE,
        }
    }

    /// Whether the tunnel carries inner packets of this family.
    pub fn carries(self, inner_v6: bool) -> bool {
        match self {
            Kind::Ipip => !inner_v6,
            Kind::SixInFour => inner_v6,
            Kind::Gre | Kind::Gre6 => true,
        }
    }
}

/// Outer TTL / hop limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// Copy the inner packet's (already decremented) TTL or hop limit.
    Inherit,
    Fixed(u8),
}

/// Outer DSCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dscp {
    /// Copy the inner packet's DSCP.
    Inherit,
    Fixed(u8),
}

/// A configured tunnel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub kind: Kind,
    /// Our endpoint: the outer source, and the address decapsulated packets arrive at.
    pub local: IpAddr,
    /// The far endpoint: the outer destination, and the only accepted outer source.
    pub remote: IpAddr,
    /// GRE key (RFC 2890), sent and required on receipt.
    pub key: Option<u32>,
    /// GRE sequence numbers: sent, and required in order on receipt.
    pub sequence: bool,
    /// GRE checksum: sent, and required (and verified) on receipt.
    pub checksum: bool,
    pub ttl: Ttl,
    pub dscp: Dscp,
    /// Inner MTU: the largest inner packet sent without fragmenting or refusing it.
    pub mtu: u16,
}

impl Spec {
    /// Bytes the encapsulation adds in front of the inner packet (outer IP + GRE).
    pub fn overhead(&self) -> usize {
        let ip = if self.kind.outer_v6() { 40 } else { 20 };
        ip + self.gre_len()
    }

    /// Length of the GRE header (0 for IPIP and 6in4).
    pub fn gre_len(&self) -> usize {
        if !self.kind.is_gre() {
            return 0;
        }
        4 + 4 * (self.checksum as usize + self.key.is_some() as usize + self.sequence as usize)
    }

    /// Checks the parts of a spec that depend on each other; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let v6 = self.kind.outer_v6();
        for (field, a) in [("local", self.local), ("remote", self.remote)] {
            if a.is_ipv6() != v6 {
                return Err(format!(
                    "{field}: {a} is not an IPv{} address, as a {} tunnel needs",
                    if v6 { 6 } else { 4 },
                    self.kind.name()
                ));
            }
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err(format!("{field}: {a} cannot be a tunnel endpoint"));
            }
        }
        if !self.kind.is_gre() {
            for (field, set) in [
                ("key", self.key.is_some()),
                ("sequence", self.sequence),
                ("checksum", self.checksum),
            ] {
                if set {
                    return Err(format!("{field}: only GRE tunnels have a {field}"));
                }
            }
        }
        if let Dscp::Fixed(d) = self.dscp {
            if d > 63 {
                return Err(format!("dscp: {d} is above 63"));
            }
        }
        if let Ttl::Fixed(0) = self.ttl {
            return Err("ttl: 0 would never leave the host".into());
        }
        let min = if self.kind.carries(false) { 68 } else { 1280 };
        if self.mtu < min {
            return Err(format!(
                "mtu: {} is below {min}, the least a {} tunnel must carry",
                self.mtu,
                self.kind.name()
            ));
        }
        Ok(())
    }
}

/// A decapsulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decap {
    /// Index of the tunnel it came through.
    pub tunnel: u16,
    /// Offset of the inner IP header from the start of the outer one.
    pub inner: usize,
    pub inner_v6: bool,
}
