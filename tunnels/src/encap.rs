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
use crate::table::Tunnel;
use wire::gre;

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
