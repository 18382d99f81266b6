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

use std::net::IpAddr;

use crate::ecn;
use crate::gre;
use crate::table::Tunnel;
use crate::tunnel::{Dscp, Spec, Ttl};

/// The outer headers of a tunnel with every per-packet field zero, and the ones'-complement
/// sum of its IPv4 header: encapsulation copies it and patches the few fields that vary
/// (VPP's "rewrite string"), so the outer IPv4 checksum costs three additions.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: [u8; MAX_OVERHEAD],
    ipv4_sum: u64,
    /// `Spec::overhead()`, computed once: per packet it was a dozen instructions of flag
    /// arithmetic, twice.
    overhead: u8,
}

/// Outer IPv6 (40) + GRE with checksum, key and sequence number (16).
pub const MAX_OVERHEAD: usize = 56;

impl Template {
    pub fn new(spec: &Spec) -> Template {
        let mut bytes = [0u8; MAX_OVERHEAD];
        let protocol = spec.kind.protocol();
        let ip_len = match (spec.local, spec.remote) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let df = wire::ipv4::FLAG_DF;
                wire::ipv4::write(&mut bytes, 0, 0, 0, df, 0, protocol, src, dst);
                bytes[10..12].fill(0);
                20
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                wire::ipv6::write(&mut bytes, 0, protocol, 0, src, dst);
                40
            }
            // `Spec::validate` makes both endpoints the family of the kind.
            _ => 0,
        };
        if spec.kind.is_gre() {
            gre::Header {
                flags: if spec.checksum { gre::FLAG_CHECKSUM } else { 0 },
                protocol: 0,
                key: spec.key,
                sequence: spec.sequence.then_some(0),
                len: spec.gre_len(),
            }
            .write(&mut bytes[ip_len..]);
        }
        Template {
            ipv4_sum: wire::sum_words(&bytes[..20], 0),
            bytes,
            overhead: spec.overhead() as u8,
        }
    }

    /// Bytes of outer headers ([`Spec::overhead`]).
    #[inline(always)]
    pub fn overhead(&self) -> usize {
        self.overhead as usize
    }

    /// Writes the template's `overhead()` bytes to the front of `out` (at least that long) with
    /// fixed-size, possibly overlapping moves instead of a call to `memcpy`.
    #[inline(always)]
    fn write_to(&self, out: &mut [u8]) {
        let n = self.overhead();
        let (src, dst) = (&self.bytes, &mut out[..n]);
        if n >= 32 {
            dst[..32].copy_from_slice(&src[..32]);
            dst[n - 32..].copy_from_slice(&src[n - 32..n]);
        } else if n >= 16 {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..].copy_from_slice(&src[n - 16..n]);
        } else {
            dst.copy_from_slice(&src[..n]);
        }
    }
}

/// Fills `packet[..overhead]` with the outer headers for the inner IP packet at
/// `packet[overhead..]`, where `overhead == tunnel.spec.overhead()`. Returns `false` (and
/// writes nothing) if the inner packet is not one the tunnel carries.
#[inline]
pub fn encap(tunnel: &Tunnel, packet: &mut [u8]) -> bool {
    let spec = &tunnel.spec;
    let template = tunnel.template();
    let overhead = template.overhead();
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
    let total = packet.len();
    template.write_to(packet);

    let outer_v6 = spec.kind.outer_v6();
    let ip_len = if outer_v6 { 40 } else { 20 };
    if spec.kind.is_gre() {
        let g = &mut packet[ip_len..];
        let protocol = if inner_v6 {
            gre::TYPE_IPV6
        } else {
            gre::TYPE_IPV4
        };
        g[2..4].copy_from_slice(&protocol.to_be_bytes());
        if spec.sequence {
            let at = spec.gre_len() - 4;
            g[at..at + 4].copy_from_slice(&tunnel.next_tx_sequence().to_be_bytes());
        }
        if spec.checksum {
            gre::fill_checksum(g);
        }
    }
    if outer_v6 {
        packet[0] = 0x60 | tos >> 4;
        packet[1] = tos << 4;
        packet[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        packet[7] = ttl;
    } else {
        packet[1] = tos;
        packet[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        packet[8] = ttl;
        let sum = template.ipv4_sum + tos as u64 + total as u64 + ((ttl as u64) << 8);
        packet[10..12].copy_from_slice(&wire::fold(sum).to_be_bytes());
    }
    true
}
