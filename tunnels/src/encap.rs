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

/// The outer headers of a tunnel with every per-packet field zero, the ones'-complement
/// sum of its IPv4 header, and the spec's per-packet choices reduced to masks and offsets:
/// encapsulation copies the bytes and patches the few fields that vary (VPP's "rewrite
/// string"), reading nothing but this one structure.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: [u8; MAX_OVERHEAD],
    /// The ones'-complement sum of the IPv4 header's fixed fields, folded to 16 bits.
    ipv4_sum: u32,
    /// `Spec::overhead()`, computed once: per packet it was a dozen instructions of flag
    /// arithmetic, twice.
    overhead: u8,
    /// The outer DSCP bits are `inner & dscp_keep | dscp_set`: inherited (keep) or fixed.
    dscp_keep: u8,
    dscp_set: u8,
    /// A fixed outer TTL / hop limit, or 0: the inner packet's.
    ttl_fixed: u8,
    outer_v6: bool,
    /// Offset of the GRE header, 0 without one.
    gre_at: u8,
    /// Offset of the sequence number field, 0 without one.
    sequence_at: u8,
    checksum: bool,
    /// Whether inner IPv4 / IPv6 packets may enter.
    carries_v4: bool,
    carries_v6: bool,
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
        let gre_len = spec.gre_len();
        if spec.kind.is_gre() {
            gre::Header {
                flags: if spec.checksum { gre::FLAG_CHECKSUM } else { 0 },
                protocol: 0,
                key: spec.key,
                sequence: spec.sequence.then_some(0),
                len: gre_len,
            }
            .write(&mut bytes[ip_len..]);
        }
        let (dscp_keep, dscp_set) = match spec.dscp {
            Dscp::Inherit => (0b1111_1100, 0),
            Dscp::Fixed(d) => (0, d << 2),
        };
        Template {
            ipv4_sum: !wire::fold(wire::sum_words(&bytes[..20], 0)) as u32,
            bytes,
            overhead: spec.overhead() as u8,
            dscp_keep,
            dscp_set,
            ttl_fixed: match spec.ttl {
                Ttl::Inherit => 0,
                Ttl::Fixed(t) => t,
            },
            outer_v6: spec.kind.outer_v6(),
            gre_at: if spec.kind.is_gre() { ip_len as u8 } else { 0 },
            sequence_at: if spec.sequence {
                (ip_len + gre_len - 4) as u8
            } else {
                0
            },
            checksum: spec.checksum,
            carries_v4: spec.kind.carries(false),
            carries_v6: spec.kind.carries(true),
        }
    }

    /// Bytes of outer headers ([`Spec::overhead`]).
    #[inline(always)]
    pub fn overhead(&self) -> usize {
        self.overhead as usize
    }

    /// Writes the template's `overhead()` bytes to `out` (exactly that long) with
    /// fixed-size, possibly overlapping moves instead of a call to `memcpy`.
    #[inline(always)]
    fn write_to(&self, out: &mut [u8]) {
        let n = out.len().min(MAX_OVERHEAD);
        let (src, dst) = (&self.bytes, out);
        if n >= 32 {
            dst[..32].copy_from_slice(&src[..32]);
            dst[n - 32..n].copy_from_slice(&src[n - 32..n]);
        } else if n >= 16 {
            dst[..16].copy_from_slice(&src[..16]);
            dst[n - 16..n].copy_from_slice(&src[n - 16..n]);
        } else {
            dst[..n].copy_from_slice(&src[..n]);
        }
    }
}

/// Fills `packet[..overhead]` with the outer headers for the inner IP packet at
/// `packet[overhead..]`, where `overhead == tunnel.spec.overhead()`. Returns `false` (and
/// writes nothing) if the inner packet is not one the tunnel carries.
#[inline(always)]
pub fn encap(tunnel: &Tunnel, packet: &mut [u8]) -> bool {
    let t = tunnel.template();
    let total = packet.len();
    let Some((outer, inner)) = packet.split_at_mut_checked(t.overhead()) else {
        return false;
    };
    // Enough of the inner header for its family, TOS and TTL; the family's minimum
    // length is checked below.
    let Some(head) = inner.first_chunk::<20>() else {
        return false;
    };
    let inner_v6 = match head[0] >> 4 {
        4 if t.carries_v4 => false,
        6 if t.carries_v6 && inner.len() >= 40 => true,
        _ => return false,
    };
    let (inner_tos, inner_ttl) = if inner_v6 {
        ((head[0] << 4) | (head[1] >> 4), head[7])
    } else {
        (head[1], head[8])
    };
    let tos = (inner_tos & t.dscp_keep) | t.dscp_set | ecn::encap(inner_tos);
    let ttl = if t.ttl_fixed != 0 {
        t.ttl_fixed
    } else {
        inner_ttl
    };
    t.write_to(outer);

    if t.gre_at != 0 {
        let g = &mut outer[t.gre_at as usize..];
        let protocol = if inner_v6 {
            gre::TYPE_IPV6
        } else {
            gre::TYPE_IPV4
        };
        if let Some(field) = g.get_mut(2..4) {
            field.copy_from_slice(&protocol.to_be_bytes());
        }
        if t.sequence_at != 0 {
            let at = t.sequence_at as usize;
            let sequence = tunnel.next_tx_sequence().to_be_bytes();
            if let Some(field) = outer.get_mut(at..at + 4) {
                field.copy_from_slice(&sequence);
            }
        }
        if t.checksum {
            // The GRE checksum covers the GRE header and the inner packet (RFC 2784 §2.5).
            gre::fill_checksum(&mut packet[t.gre_at as usize..]);
        }
    }
    let Some(ip) = packet.first_chunk_mut::<20>() else {
        return false;
    };
    if t.outer_v6 {
        ip[0] = 0x60 | tos >> 4;
        ip[1] = tos << 4;
        ip[4..6].copy_from_slice(&((total - 40) as u16).to_be_bytes());
        ip[7] = ttl;
    } else {
        ip[1] = tos;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[8] = ttl;
        // A folded sum plus three fields stays below 2^18: two folds finish it.
        let mut sum = t.ipv4_sum + tos as u32 + total as u32 + ((ttl as u32) << 8);
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    true
}
