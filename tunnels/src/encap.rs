//! Encapsulation: writes the outer IP (and GRE) header in front of an inner packet that
//! is already in place, so the caller prepends into its buffer's headroom and nothing is
//! copied.
//!
//! Outer header choices (documented because a reader of a capture will ask):
//! * IPv4 outer: DF always set and identification 0 (an atomic datagram, RFC 6864). tern
//!   never sends an outer packet it expects to be fragmented: an inner packet too big for
//!   the tunnel is refused with ICMP (DF set) or fragmented *before* encapsulation
//!   (RFC 4459 §3.1), and ICMP about the outer path lowers the tunnel MTU.
//! * IPv6 outer: flow label 0, no extension headers.
//! * ECN: RFC 6040 normal mode (copy the inner field). DSCP and TTL: as configured.

use crate::ecn;
use crate::gre;
use crate::table::Tunnel;
use crate::tunnel::{Dscp, Ttl};

/// Fills `packet[..overhead]` with the outer headers for the inner IP packet at
/// `packet[overhead..]`, where `overhead == tunnel.spec.overhead()`. Returns `false` (and
/// writes nothing) if the inner packet is not one the tunnel carries.
pub fn encap(tunnel: &Tunnel, packet: &mut [u8]) -> bool {
    let spec = &tunnel.spec;
    let overhead = spec.overhead();
    let Some(inner) = packet.get(overhead..) else {
        return false;
    };
    let Some(&first) = inner.first() else {
        return false;
    };
    let inner_v6 = match first >> 4 {
        4 if inner.len() >= 20 => false,
        6 if inner.len() >= 40 => true,
        _ => return false,
    };
    if !spec.kind.carries(inner_v6) {
        return false;
    }
    let (inner_tos, inner_ttl) = if inner_v6 {
        ((inner[0] << 4) | (inner[1] >> 4), inner[7])
    } else {
        (inner[1], inner[8])
    };
    let dscp = match spec.dscp {
        Dscp::Inherit => inner_tos >> 2,
        Dscp::Fixed(d) => d,
    };
    let tos = dscp << 2 | ecn::encap(inner_tos);
    let ttl = match spec.ttl {
        Ttl::Inherit => inner_ttl,
        Ttl::Fixed(t) => t,
    };

    let ip_len = if spec.kind.outer_v6() { 40 } else { 20 };
    let gre_len = spec.gre_len();
    if gre_len > 0 {
        let header = gre::Header {
            flags: if spec.checksum { gre::FLAG_CHECKSUM } else { 0 },
            protocol: if inner_v6 {
                gre::TYPE_IPV6
            } else {
                gre::TYPE_IPV4
            },
            key: spec.key,
            sequence: spec.sequence.then(|| tunnel.next_tx_sequence()),
            len: gre_len,
        };
        header.write(&mut packet[ip_len..]);
        if spec.checksum {
            gre::fill_checksum(&mut packet[ip_len..]);
        }
    }

    let total = packet.len();
    let protocol = spec.kind.protocol();
    match (spec.local, spec.remote) {
        (std::net::IpAddr::V4(src), std::net::IpAddr::V4(dst)) => {
            let df = wire::ipv4::FLAG_DF;
            wire::ipv4::write(packet, tos, total as u16, 0, df, ttl, protocol, src, dst);
        }
        (std::net::IpAddr::V6(src), std::net::IpAddr::V6(dst)) => {
            wire::ipv6::write(packet, (total - 40) as u16, protocol, ttl, src, dst);
            packet[0] = 0x60 | tos >> 4;
            packet[1] = (tos << 4) | (packet[1] & 0x0f);
        }
        // `Spec::validate` makes both endpoints the family of the kind.
        _ => return false,
    }
    true
}
