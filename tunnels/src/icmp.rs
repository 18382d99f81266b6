//! ICMP errors about our own outer packets, received at a tunnel's local endpoint.
//!
//! A router inside the tunnel's path reports on the *outer* packet; the host that sent the
//! *inner* packet never hears of it unless the encapsulator relays it (RFC 2003 §4). tern:
//! * "fragmentation needed" / "packet too big": lowers the tunnel's path MTU, and relays a
//!   frag-needed (IPv4 inner with DF set) or packet-too-big (IPv6 inner) carrying the new
//!   tunnel MTU to the inner source, so its next packets fit;
//! * other destination unreachable, time exceeded, parameter problem: relays a host
//!   (address) unreachable to the inner source, since the tunnel cannot deliver to it;
//! * the relay needs the quoted inner header; a quote too short to hold it is not relayed.

use std::net::IpAddr;

use crate::table::TunnelTable;
use crate::tunnel::Kind;
use crate::{PROTO_GRE, PROTO_IPIP, PROTO_IPV6};
use wire::gre;

/// What to tell the inner source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Fragmentation needed (IPv4) or packet too big (IPv6) with this MTU.
    TooBig { mtu: u16 },
    /// Host unreachable (IPv4) or address unreachable (IPv6).
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OuterError {
    pub tunnel: u16,
    /// Offset of the quoted inner IP header in the quoted outer packet.
    pub inner: usize,
    pub inner_v6: bool,
    /// Whether a too-big error lowered the tunnel MTU.
    pub mtu_lowered: bool,
    pub relay: Option<Relay>,
}

/// Handles an ICMP error whose quoted packet (`quoted`, from the outer IP header on) is one
/// of our tunnel packets. `too_big` carries the MTU of a frag-needed / packet-too-big.
/// Returns `None` when the quoted packet is not from one of our tunnels.
pub fn outer_error(table: &TunnelTable, quoted: &[u8], too_big: Option<u32>) -> Option<OuterError> {
    let (kind, outer_len, local, remote) = match quoted.first()? >> 4 {
        4 if quoted.len() >= 20 => {
            let kind = match quoted[9] {
                PROTO_IPIP => Kind::Ipip,
                PROTO_IPV6 => Kind::SixInFour,
                PROTO_GRE => Kind::Gre,
                _ => return None,
            };
            let len = wire::ipv4::header_len(quoted);
            let src = IpAddr::V4(wire::ipv4::src(quoted));
            let dst = IpAddr::V4(wire::ipv4::dst(quoted));
            (kind, len, src, dst)
        }
        6 if quoted.len() >= 40 && quoted[6] == PROTO_GRE => {
            let src = IpAddr::V6(wire::ipv6::src(quoted));
            let dst = IpAddr::V6(wire::ipv6::dst(quoted));
            (Kind::Gre6, 40, src, dst)
        }
        _ => return None,
    };
    let after = quoted.get(outer_len..)?;
    let (index, inner, inner_v6) = if kind.is_gre() {
        // The quote may stop inside the GRE header (RFC 792 promises only 8 bytes): without
        // the key, any tunnel between the endpoints is the one.
        match gre::Header::parse(after) {
            Ok(h) => (
                table.find(kind, local, remote, h.key).ok()?,
                outer_len + h.len,
                h.protocol == gre::TYPE_IPV6,
            ),
            Err(_) => (table.any_between(kind, local, remote)?, usize::MAX, false),
        }
    } else {
        (
            table.find(kind, local, remote, None).ok()?,
            outer_len,
            kind == Kind::SixInFour,
        )
    };
    let tunnel = table.get(index)?;
    let mtu_lowered = too_big.is_some_and(|mtu| tunnel.lower_path_mtu(mtu));
    let inner_min = if inner_v6 { 40 } else { 20 };
    let quoted_inner = inner
        .checked_add(inner_min)
        .is_some_and(|end| end <= quoted.len());
    let relay = if !quoted_inner {
        None
    } else if too_big.is_some() {
        let inner_df =
            inner_v6 || wire::ipv4::flags_frag(&quoted[inner..]) & wire::ipv4::FLAG_DF != 0;
        inner_df.then(|| Relay::TooBig { mtu: tunnel.mtu() })
    } else {
        Some(Relay::Unreachable)
    };
    Some(OuterError {
        tunnel: index,
        inner,
        inner_v6,
        mtu_lowered,
        relay,
    })
}
