//! Packets for tern itself: ARP, ICMP echo, NDP, and the errors owed to UDP probes.
//! Replies are built in the frame that asked (no allocation) and handed back to the
//! worker, which sends them on the port (link-layer replies) or routes them (IP replies).

use std::net::{IpAddr, Ipv6Addr};

use super::PortInfo;
use crate::buf::Frame;
use crate::counters::DropReason;
use crate::wire::{self, arp, eth, icmp, icmp4, icmp6, ipv4, ipv6, ndp, Mac};

/// What handling a local packet produced.
pub enum Outcome {
    /// Send the (rewritten) frame back out of the port it came in on, as is.
    ReplyOnPort,
    /// Route the (rewritten) frame: an IP reply.
    ReplyRouted,
    /// For a service on tern's address (TCP, UDP, ICMP other than echo): the kernel's, through
    /// the host interface when there is one; otherwise refused with a port unreachable
    /// (`unreachable`) or dropped.
    ToHost {
        unreachable: bool,
    },
    /// Nothing to send.
    Consumed,
    Drop(DropReason),
}

/// A neighbour the packet taught us (ARP sender, NDP link-layer option).
pub type Learned = Option<(IpAddr, Mac)>;

/// ARP: answer requests for our addresses, learn from replies and requests.
pub fn arp(frame: &mut Frame, port: &PortInfo) -> (Outcome, Learned) {
    let Some(a) = arp::parse(&frame.data()[eth::LEN..]) else {
        return (Outcome::Drop(DropReason::ArpMalformed), None);
    };
    let on_link = port.v4.iter().any(|n| n.contains(&a.sender_ip)) && !a.sender_ip.is_unspecified();
    let learned = on_link.then_some((IpAddr::V4(a.sender_ip), a.sender_mac));
    if a.op != arp::OP_REQUEST || !port.owns_v4(a.target_ip) {
        return (Outcome::Consumed, learned);
    }
    let reply = arp::Arp {
        op: arp::OP_REPLY,
        sender_mac: port.mac,
        sender_ip: a.target_ip,
        target_mac: a.sender_mac,
        target_ip: a.sender_ip,
    };
    let f = frame.data_mut();
    eth::write(f, &a.sender_mac, &port.mac, eth::TYPE_ARP);
    arp::write(&mut f[eth::LEN..], &reply);
    frame.set_len(eth::LEN + arp::LEN.max(46));
    (Outcome::ReplyOnPort, learned)
}

/// IPv4 addressed to one of our addresses.
pub fn ipv4(frame: &mut Frame) -> Outcome {
    let f = frame.data_mut();
    let ip = &mut f[eth::LEN..];
    let ihl = ipv4::header_len(ip);
    let total = ipv4::total_len(ip);
    let fragment = ipv4::is_fragment(ip);
    match ipv4::proto(ip) {
        // We do not reassemble: a fragmented ping to the router is not answered.
        _ if fragment => Outcome::Drop(DropReason::LocalUnhandled),
        ipv4::PROTO_ICMP => {
            let msg = &ip[ihl..total];
            if msg.len() < 8 || wire::checksum(msg) != 0 {
                return Outcome::Drop(DropReason::IcmpMalformed);
            }
            if msg[0] != icmp4::ECHO_REQUEST {
                // Errors about the kernel's own connections (PMTU, unreachable) are its.
                return Outcome::ToHost { unreachable: false };
            }
            let (src, dst) = (ipv4::src(ip), ipv4::dst(ip));
            ip[ipv4::SRC..ipv4::SRC + 4].copy_from_slice(&dst.octets());
            ip[ipv4::DST..ipv4::DST + 4].copy_from_slice(&src.octets());
            ip[ipv4::TTL] = 64;
            ipv4::fill_checksum(ip);
            let msg = &mut ip[ihl..total];
            msg[icmp::TYPE] = icmp4::ECHO_REPLY;
            icmp::fill_checksum4(msg);
            Outcome::ReplyRouted
        }
        ipv4::PROTO_UDP => Outcome::ToHost { unreachable: true },
        ipv4::PROTO_TCP => Outcome::ToHost { unreachable: false },
        _ => Outcome::Drop(DropReason::LocalUnhandled),
    }
}

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// IPv6 to one of our addresses or groups.
pub fn ipv6(frame: &mut Frame, port: &PortInfo) -> (Outcome, Learned) {
    let f = frame.data_mut();
    let eth_src = eth::src(f);
    let ip = &mut f[eth::LEN..];
    let (src, dst) = (ipv6::src(ip), ipv6::dst(ip));
    let total = ipv6::LEN + ipv6::payload_len(ip);
    match ipv6::next_header(ip) {
        ipv6::NEXT_ICMP => {}
        // UDP to us: a traceroute probe wants its port unreachable.
        17 if !dst.is_multicast() => return (Outcome::ToHost { unreachable: true }, None),
        6 if !dst.is_multicast() => return (Outcome::ToHost { unreachable: false }, None),
        _ => return (Outcome::Drop(DropReason::LocalUnhandled), None),
    }
    let msg = &ip[ipv6::LEN..total];
    if msg.len() < 8 || wire::checksum6(src, dst, ipv6::NEXT_ICMP, msg) != 0 {
        return (Outcome::Drop(DropReason::IcmpMalformed), None);
    }
    match msg[0] {
        icmp6::ECHO_REQUEST => {
            // Reply from the address that was pinged; a multicast ping is answered from ours.
            let from = if dst.is_multicast() {
                port.v6_source()
            } else {
                dst
            };
            ipv6::write(
                ip,
                (total - ipv6::LEN) as u16,
                ipv6::NEXT_ICMP,
                64,
                from,
                src,
            );
            let msg = &mut ip[ipv6::LEN..total];
            msg[icmp::TYPE] = icmp6::ECHO_REPLY;
            icmp::fill_checksum6(msg, from, src);
            (Outcome::ReplyRouted, None)
        }
        icmp6::NEIGHBOR_SOLICIT => neighbor_solicit(frame, port, src, eth_src, total),
        icmp6::NEIGHBOR_ADVERT => {
            // RFC 4861 §7.1.2: hop limit 255, 24+ bytes; learn target from its option.
            if ip[7] != 255 || msg.len() < 24 {
                return (Outcome::Drop(DropReason::IcmpMalformed), None);
            }
            let mut t = [0u8; 16];
            t.copy_from_slice(&msg[8..24]);
            let target = Ipv6Addr::from(t);
            let mac = link_layer_option(&msg[24..], icmp6::OPT_TARGET_LL).unwrap_or(eth_src);
            (Outcome::Consumed, Some((IpAddr::V6(target), mac)))
        }
        // Router advertisements, MLD, errors: the kernel's business.
        _ if !dst.is_multicast() => (Outcome::ToHost { unreachable: false }, None),
        _ => (Outcome::Consumed, None),
    }
}

fn neighbor_solicit(
    frame: &mut Frame,
    port: &PortInfo,
    src: Ipv6Addr,
    eth_src: Mac,
    total: usize,
) -> (Outcome, Learned) {
    let f = frame.data_mut();
    let ip = &mut f[eth::LEN..];
    let msg = &ip[ipv6::LEN..total];
    if ip[7] != 255 || msg.len() < 24 {
        return (Outcome::Drop(DropReason::IcmpMalformed), None);
    }
    let mut t = [0u8; 16];
    t.copy_from_slice(&msg[8..24]);
    let target = Ipv6Addr::from(t);
    let source_ll = link_layer_option(&msg[24..], icmp6::OPT_SOURCE_LL);
    let learned = match (src.is_unspecified(), source_ll) {
        (false, Some(mac)) => Some((IpAddr::V6(src), mac)),
        _ => None,
    };
    if !port.owns_v6(target) {
        return (Outcome::Consumed, learned);
    }
    // Neighbor Advertisement: Router + Solicited (unless DAD) + Override, target LL option.
    let (dst, dst_mac, flags) = if src.is_unspecified() {
        let all = ndp::FLAG_ROUTER | ndp::FLAG_OVERRIDE;
        (ALL_NODES, ipv6::multicast_mac(ALL_NODES), all)
    } else {
        let solicited = ndp::FLAG_ROUTER | ndp::FLAG_SOLICITED | ndp::FLAG_OVERRIDE;
        (src, source_ll.unwrap_or(eth_src), solicited)
    };
    let bytes_needed = ndp::FRAME_LEN;
    let f = frame.rx_space();
    if f.len() < bytes_needed {
        return (Outcome::Drop(DropReason::NoBuffer), learned);
    }
    let m = ndp::Message {
        kind: icmp6::NEIGHBOR_ADVERT,
        flags,
        target,
        mac: port.mac,
    };
    ndp::write_frame(f, &dst_mac, target, dst, &m);
    frame.set_len(bytes_needed);
    (Outcome::ReplyOnPort, learned)
}

/// The MAC in the first NDP option of `kind` (RFC 4861 §4.6.1), if well formed.
fn link_layer_option(mut options: &[u8], kind: u8) -> Option<Mac> {
    while options.len() >= 8 {
        let len = options[1] as usize * 8;
        if len == 0 || len > options.len() {
            return None;
        }
        if options[0] == kind && len >= 8 {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&options[2..8]);
            return Some(mac);
        }
        options = &options[len..];
    }
    None
}
