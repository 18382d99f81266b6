//! Egress MTU: a packet that does not fit either gets an ICMP error (IPv4 with DF set,
//! and always for IPv6: routers do not fragment IPv6) or, IPv4 with DF clear, is cut into
//! fragments here (RFC 791).

use crate::buf::{Frame, Pool};
use crate::wire::{eth, ipv4};

/// Whether the IP packet in `frame` fits an egress MTU of `mtu`.
#[inline(always)]
pub fn fits(frame: &Frame, mtu: u16) -> bool {
    frame.len() - eth::LEN <= mtu as usize
}

/// Whether the IPv4 packet in `frame` forbids fragmentation.
pub fn dont_fragment(frame: &Frame) -> bool {
    ipv4::flags_frag(&frame.data()[eth::LEN..]) & ipv4::FLAG_DF != 0
}

/// Splits the IPv4 packet in `frame` into fragments of at most `mtu` bytes, appended to
/// `out` with the original Ethernet header. Options are copied into every fragment.
/// Returns the number of fragments, or `None` if the pool ran dry (nothing is appended).
pub fn fragment_v4(
    frame: &Frame,
    mtu: u16,
    pool: &mut Pool,
    out: &mut Vec<Frame>,
) -> Option<usize> {
    let f = frame.data();
    let ip = &f[eth::LEN..];
    let ihl = ipv4::header_len(ip);
    let payload = &ip[ihl..ipv4::total_len(ip)];
    let chunk = ((mtu as usize).saturating_sub(ihl)) & !7;
    if chunk == 0 {
        return None;
    }
    let count = payload.len().div_ceil(chunk);
    if pool.available() < count {
        return None;
    }
    let flags = ipv4::flags_frag(ip);
    let base_offset = (flags & ipv4::OFFSET_MASK) as usize * 8;
    let more_after = flags & ipv4::FLAG_MF != 0;
    for (i, piece) in payload.chunks(chunk).enumerate() {
        let mut frag = pool.alloc()?;
        let len = eth::LEN + ihl + piece.len();
        let space = frag.rx_space();
        space[..eth::LEN + ihl].copy_from_slice(&f[..eth::LEN + ihl]);
        space[eth::LEN + ihl..len].copy_from_slice(piece);
        frag.set_len(len);
        frag.port = frame.port;
        let h = &mut frag.data_mut()[eth::LEN..];
        let last = i == count - 1;
        let offset = ((base_offset + i * chunk) / 8) as u16;
        let mf = if !last || more_after {
            ipv4::FLAG_MF
        } else {
            0
        };
        h[2..4].copy_from_slice(&((ihl + piece.len()) as u16).to_be_bytes());
        h[6..8].copy_from_slice(&(offset | mf).to_be_bytes());
        ipv4::fill_checksum(h);
        out.push(frag);
    }
    Some(count)
}
