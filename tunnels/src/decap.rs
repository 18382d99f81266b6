//! Decapsulation: checks an outer packet addressed to a tunnel endpoint of ours and finds
//! the inner packet in it, or says exactly why not.
//!
//! Checks, in order: the outer packet is whole (not a fragment: tern does not reassemble
//! outer packets, and never sends fragmented ones); the GRE header has version 0 and no
//! flag tern does not know; a tunnel of this kind exists from this remote to this local
//! address (anti-spoofing) with this key (Linux rules: a keyed tunnel takes only its key,
//! an unkeyed one only unkeyed packets); the GRE checksum is present exactly when
//! configured, and verifies; the sequence number is present when configured and after the
//! last one accepted; the payload is an IP packet of a family the tunnel carries; and the
//! RFC 6040 ECN combination is not the drop case. The inner ECN field is then rewritten
//! as RFC 6040 says (with the IPv4 header checksum updated incrementally).

use crate::table::{LastShape, Miss, TunnelTable};
pub use crate::tunnel::Decap;
use crate::tunnel::Kind;
use crate::{ecn, PROTO_GRE, PROTO_IPIP, PROTO_IPV6};
use wire::gre;

/// Why a packet to a tunnel endpoint was dropped. Each has its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Ends inside a header.
    Truncated,
    /// An outer IPv4 fragment.
    OuterFragment,
    /// No tunnel of this kind from this source to this destination.
    UnknownRemote,
    /// Tunnels between these endpoints exist, none with this key (or without a key).
    KeyMismatch,
    /// GRE checksum present but not configured, or configured but absent.
    ChecksumMismatch,
    /// GRE checksum does not verify.
    BadChecksum,
    /// Sequence number missing, duplicated or older than the last accepted.
    BadSequence,
    /// GRE version is not 0.
    BadVersion,
    /// A GRE flag other than C, K, S is set (routing, strict source route, recursion…).
    BadFlags,
    /// The payload is not IPv4/IPv6, or not a family this tunnel carries.
    BadPayload,
    /// RFC 6040: CE on the outer header of a Not-ECT inner packet.
    EcnDrop,
}

impl From<Miss> for Error {
    fn from(m: Miss) -> Error {
        match m {
            Miss::UnknownRemote => Error::UnknownRemote,
            Miss::KeyMismatch => Error::KeyMismatch,
        }
    }
}

/// Whether an IPv4 packet of protocol `proto` may be a tunnel packet: the receiver's
/// first test, which every other packet fails.
#[inline(always)]
pub fn is_tunnel_protocol(proto: u8) -> bool {
    matches!(proto, PROTO_IPIP | PROTO_IPV6 | PROTO_GRE)
}

/// Decapsulates the packet `ip` (the outer IP header onwards, exactly the packet's length;
/// header fields already validated by the parse stage). May rewrite the inner ECN field.
/// `last` is the receiver's memo for [`shaped_v4`].
#[inline]
pub fn decap(table: &TunnelTable, ip: &mut [u8], last: &mut LastShape) -> Result<Decap, Error> {
    match shaped_v4(table, ip, last) {
        Some(shaped) => {
            let outer_ecn = ip[1]; // in bounds: the shape is 28 bytes long
            inner_packet(ip, shaped, outer_ecn)
        }
        None => decap_general(table, ip),
    }
}

/// The common case in a few compares: an option-less, unfragmented IPv4 packet whose
/// protocol, endpoints and GRE flags, protocol type and key are exactly those of a tunnel
/// without GRE checksum or sequence numbers (`TunnelTable::match_v4`). Its inner packet
/// is still to be checked ([`decap`] does). `None`: not this case, [`decap_general`]
/// decides.
#[inline(always)]
pub fn shaped_v4(table: &TunnelTable, ip: &[u8], last: &mut LastShape) -> Option<Decap> {
    let head = ip.first_chunk::<28>()?;
    if head[0] != 0x45 || wire::ipv4::is_fragment(head) {
        return None;
    }
    table.match_v4(head, last)
}

/// Every check, in the order of the module docs, with the reason for a refusal. [`decap`]
/// tries a shortcut for the common shape first; on every input the two agree
/// (`tests/endpoints.rs` checks it on valid and mutated packets of every kind).
pub fn decap_general(table: &TunnelTable, ip: &mut [u8]) -> Result<Decap, Error> {
    let (d, outer_ecn) = outer_headers(table, ip)?;
    inner_packet(ip, d, outer_ecn)
}

/// The checks of [`decap_general`] up to the inner packet: which tunnel, where its inner
/// packet starts, and the outer ECN field (low two bits) for RFC 6040. A caller that
/// checks the inner packet its own way (the dataplane, with its parse stage's checks)
/// stops here.
pub fn outer_headers(table: &TunnelTable, ip: &[u8]) -> Result<(Decap, u8), Error> {
    let (kind, outer_len, local, remote, outer_ecn) = match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 20 => {
            if wire::ipv4::is_fragment(ip) {
                return Err(Error::OuterFragment);
            }
            let kind = match ip[9] {
                PROTO_IPIP => Kind::Ipip,
                PROTO_IPV6 => Kind::SixInFour,
                PROTO_GRE => Kind::Gre,
                _ => return Err(Error::BadPayload),
            };
            let src = wire::ipv4::src_bits(ip) as u128;
            let dst = wire::ipv4::dst(ip).to_bits() as u128;
            (kind, wire::ipv4::header_len(ip), dst, src, ip[1])
        }
        Some(6) if ip.len() >= 40 => {
            if ip[6] != PROTO_GRE {
                return Err(Error::BadPayload);
            }
            let src = wire::ipv6::src(ip).to_bits();
            let dst = wire::ipv6::dst(ip).to_bits();
            (Kind::Gre6, 40, dst, src, ip[1] >> 4)
        }
        _ => return Err(Error::Truncated),
    };

    let (tunnel, inner, inner_v6) = if kind.is_gre() {
        let payload = ip.get(outer_len..).ok_or(Error::Truncated)?;
        let header = gre::Header::parse(payload).map_err(|e| match e {
            gre::ParseError::Truncated => Error::Truncated,
            gre::ParseError::BadVersion => Error::BadVersion,
            gre::ParseError::UnknownFlags => Error::BadFlags,
        })?;
        let index = table.find_bits(kind, local, remote, header.key)?;
        let Some(tunnel) = table.get(index) else {
            return Err(Error::UnknownRemote);
        };
        if header.has_checksum() != tunnel.spec.checksum {
            return Err(Error::ChecksumMismatch);
        }
        if header.has_checksum() && !gre::checksum_ok(payload) {
            return Err(Error::BadChecksum);
        }
        if tunnel.spec.sequence {
            match header.sequence {
                Some(s) if tunnel.accept_sequence(s) => {}
                _ => return Err(Error::BadSequence),
            }
        }
        let inner_v6 = match header.protocol {
            gre::TYPE_IPV4 => false,
            gre::TYPE_IPV6 => true,
            _ => return Err(Error::BadPayload),
        };
        (index, outer_len + header.len, inner_v6)
    } else {
        let index = table.find_bits(kind, local, remote, None)?;
        (index, outer_len, kind == Kind::SixInFour)
    };

    let d = Decap {
        tunnel,
        inner,
        inner_v6,
    };
    Ok((d, outer_ecn))
}

/// The checks on the inner packet of `d` (`ip`: the outer header onwards): there, of the
/// family the outer headers say, and not the RFC 6040 drop case; then its ECN field as
/// RFC 6040 says. `outer_ecn`: the outer header's ECN field in its low two bits.
#[inline(always)]
fn inner_packet(ip: &mut [u8], d: Decap, outer_ecn: u8) -> Result<Decap, Error> {
    let (version, min) = if d.inner_v6 { (6, 40) } else { (4, 20) };
    let inner_ip = ip.get_mut(d.inner..).ok_or(Error::Truncated)?;
    if inner_ip.len() < min {
        return Err(Error::Truncated);
    }
    if inner_ip[0] >> 4 != version {
        return Err(Error::BadPayload);
    }
    apply_ecn(outer_ecn, inner_ip, d.inner_v6)?;
    Ok(d)
}

/// RFC 6040 on the inner header; `outer_ecn` is the outer ECN field in its low two bits.
#[inline(always)]
pub fn apply_ecn(outer_ecn: u8, inner: &mut [u8], inner_v6: bool) -> Result<(), Error> {
    if outer_ecn & 0b11 == ecn::NOT_ECT {
        // Figure 4's first column: the inner field stands, whatever it is.
        return Ok(());
    }
    let inner_ecn = if inner_v6 {
        (inner[1] >> 4) & 0b11
    } else {
        inner[1] & 0b11
    };
    let out = ecn::decap(outer_ecn, inner_ecn).ok_or(Error::EcnDrop)?;
    if out == inner_ecn {
        return Ok(());
    }
    if inner_v6 {
        inner[1] = (inner[1] & 0xcf) | out << 4;
    } else {
        let old = u16::from_be_bytes([inner[0], inner[1]]);
        inner[1] = (inner[1] & !0b11) | out;
        let new = u16::from_be_bytes([inner[0], inner[1]]);
        let sum = u16::from_be_bytes([inner[10], inner[11]]);
        let sum = wire::checksum_update(sum, old, new);
        inner[10..12].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(())
}
