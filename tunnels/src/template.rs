//! A tunnel's encapsulation template: its outer headers built once from the spec, with the
//! per-packet fields blank, for `encap` to copy and patch.

use std::net::IpAddr;

use crate::tunnel::{Dscp, Spec, Ttl};
use wire::gre;

/// The outer headers of a tunnel with every per-packet field zero, the ones'-complement
/// sum of its IPv4 header, and the spec's per-packet choices reduced to masks and offsets:
/// encapsulation copies the bytes and patches the few fields that vary (VPP's "rewrite
/// string"), reading nothing but this one structure.
#[derive(Debug, Clone)]
pub struct Template {
    pub(crate) bytes: [u8; MAX_OVERHEAD],
    /// The ones'-complement sum of the IPv4 header's fixed fields, folded to 16 bits.
    pub(crate) ipv4_sum: u32,
    /// `Spec::overhead()`, computed once: per packet it was a dozen instructions of flag
    /// arithmetic, twice.
    pub(crate) overhead: u8,
    /// The outer DSCP bits are `inner & dscp_keep | dscp_set`: inherited (keep) or fixed.
    pub(crate) dscp_keep: u8,
    pub(crate) dscp_set: u8,
    /// A fixed outer TTL / hop limit, or 0: the inner packet's.
    pub(crate) ttl_fixed: u8,
    pub(crate) outer_v6: bool,
    /// Offset of the GRE header, 0 without one.
    pub(crate) gre_at: u8,
    /// Offset of the sequence number field, 0 without one.
    pub(crate) sequence_at: u8,
    pub(crate) checksum: bool,
    /// Whether inner IPv4 / IPv6 packets may enter.
    pub(crate) carries_v4: bool,
    pub(crate) carries_v6: bool,
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
                wire::ipv4::Header {
                    flags_frag: df,
                    ttl: 0,
                    ..wire::ipv4::Header::new(protocol, src, dst)
                }
                .emit(&mut bytes);
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
    pub(crate) fn write_to(&self, out: &mut [u8]) {
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
