//! Neighbour Discovery messages (RFC 4861) as tern sends them: a solicitation or an
//! advertisement carrying one link-layer address option, in a whole Ethernet frame. The
//! control plane sends solicitations and unsolicited advertisements; the pipeline answers
//! solicitations in place; both write through [`write_frame`].

use std::net::Ipv6Addr;

use crate::{eth, icmp, icmp6, ipv6, Mac};

/// Type, code, checksum, flags and reserved (8), target (16), one option (8).
pub const MESSAGE_LEN: usize = 32;
pub const FRAME_LEN: usize = eth::LEN + ipv6::LEN + MESSAGE_LEN;

/// Advertisement flags (RFC 4861 §4.4).
pub const FLAG_ROUTER: u8 = 0x80;
pub const FLAG_SOLICITED: u8 = 0x40;
pub const FLAG_OVERRIDE: u8 = 0x20;

/// Where a solicitation or advertisement keeps its target address.
pub const TARGET: usize = 8;

/// One message: a solicitation (`icmp6::NEIGHBOR_SOLICIT`, with our address as the source
/// link-layer option) or an advertisement (`icmp6::NEIGHBOR_ADVERT`, `flags`, our address
/// as the target link-layer option).
#[derive(Debug, Clone, Copy)]
pub struct Message {
    pub kind: u8,
    pub flags: u8,
    pub target: Ipv6Addr,
    /// The sender's MAC: the frame's source and the option's address.
    pub mac: Mac,
}

/// Writes `m` from `src` to `dst` (Ethernet destination `dst_mac`) into `f[..FRAME_LEN]`,
/// hop limit 255 as RFC 4861 requires.
pub fn write_frame(f: &mut [u8], dst_mac: &Mac, src: Ipv6Addr, dst: Ipv6Addr, m: &Message) {
    eth::write(f, dst_mac, &m.mac, eth::TYPE_IPV6);
    let ip = &mut f[eth::LEN..];
    ipv6::write(ip, MESSAGE_LEN as u16, ipv6::NEXT_ICMP, 255, src, dst);
    let msg = &mut ip[ipv6::LEN..ipv6::LEN + MESSAGE_LEN];
    msg.fill(0);
    msg[icmp::TYPE] = m.kind;
    msg[4] = m.flags;
    msg[TARGET..TARGET + 16].copy_from_slice(&m.target.octets());
    msg[24] = if m.kind == icmp6::NEIGHBOR_SOLICIT {
        icmp6::OPT_SOURCE_LL
    } else {
        icmp6::OPT_TARGET_LL
    };
    msg[25] = 1; // option length in units of 8 bytes
    msg[26..32].copy_from_slice(&m.mac);
    icmp::fill_checksum6(msg, src, dst);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solicitation_verifies_and_carries_the_source_option() {
        let (src, dst) = (
            "fe80::1".parse().unwrap(),
            "ff02::1:ff00:2".parse().unwrap(),
        );
        let target: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let mut f = [0u8; FRAME_LEN];
        let m = Message {
            kind: icmp6::NEIGHBOR_SOLICIT,
            flags: 0,
            target,
            mac: [2, 0, 0, 0, 0, 1],
        };
        write_frame(&mut f, &[0x33, 0x33, 0xff, 0, 0, 2], src, dst, &m);
        let msg = &f[eth::LEN + ipv6::LEN..];
        assert_eq!(crate::checksum6(src, dst, ipv6::NEXT_ICMP, msg), 0);
        assert_eq!(ipv6::hop_limit(&f[eth::LEN..]), 255);
        assert_eq!(&msg[TARGET..TARGET + 16], &target.octets());
        assert_eq!(
            (msg[24], msg[25], &msg[26..32]),
            (icmp6::OPT_SOURCE_LL, 1, &m.mac[..])
        );
        assert_eq!(eth::src(&f), m.mac);
    }
}
