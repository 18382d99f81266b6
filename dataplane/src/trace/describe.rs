//! One-line descriptions of what a trace sees: a frame's headers, a class, a hop.

use std::fmt::Write;

use crate::wire::{arp, eth, icmp, icmp4, icmp6, ipv4, ipv6, tcp, udp};

use crate::config::format_mac as mac;

/// `02:…:02 > 02:…:01 IPv4 192.0.2.2 > 203.0.113.2 ttl 64 udp 40000 > 53, 74 bytes`:
/// the Ethernet addresses, the network header and the transport ports or ICMP type. A
/// frame too short for a header says so; nothing here trusts a length field.
pub fn frame(f: &[u8]) -> String {
    if f.len() < eth::LEN {
        return format!("runt, {} bytes", f.len());
    }
    let mut s = format!("{} > {} ", mac(&eth::src(f)), mac(&eth::dst(f)));
    let ip = &f[eth::LEN..];
    match eth::ethertype(f) {
        eth::TYPE_IPV4 if ip.len() >= ipv4::MIN_LEN => {
            let _ = write!(
                s,
                "IPv4 {} > {} ttl {}",
                ipv4::src(ip),
                ipv4::dst(ip),
                ipv4::ttl(ip)
            );
            if ipv4::is_later_fragment(ip) {
                s.push_str(" fragment");
            } else {
                let l4 = ip.get(ipv4::header_len(ip)..).unwrap_or_default();
                transport(&mut s, ipv4::proto(ip), l4, false);
            }
        }
        eth::TYPE_IPV6 if ip.len() >= ipv6::LEN => {
            let _ = write!(
                s,
                "IPv6 {} > {} hlim {}",
                ipv6::src(ip),
                ipv6::dst(ip),
                ipv6::hop_limit(ip)
            );
            transport(&mut s, ipv6::next_header(ip), &ip[ipv6::LEN..], true);
        }
        eth::TYPE_ARP => match arp::parse(ip) {
            Some(a) if a.op == arp::OP_REQUEST => {
                let _ = write!(s, "ARP who-has {} tell {}", a.target_ip, a.sender_ip);
            }
            Some(a) => {
                let _ = write!(s, "ARP {} is-at {}", a.sender_ip, mac(&a.sender_mac));
            }
            None => s.push_str("ARP (malformed)"),
        },
        t => {
            let _ = write!(s, "ethertype {t:#06x}");
        }
    }
    let _ = write!(s, ", {} bytes", f.len());
    s
}

fn transport(s: &mut String, proto: u8, l4: &[u8], v6: bool) {
    match proto {
        ipv4::PROTO_TCP if l4.len() >= tcp::MIN_LEN => {
            let flags = tcp::flags(l4);
            let names: String = [
                (tcp::SYN, 'S'),
                (tcp::FIN, 'F'),
                (tcp::RST, 'R'),
                (tcp::PSH, 'P'),
                (tcp::ACK, '.'),
            ]
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|&(_, c)| c)
            .collect();
            let (from, to) = (tcp::src_port(l4), tcp::dst_port(l4));
            let _ = write!(s, " tcp {from} > {to} [{names}]");
        }
        ipv4::PROTO_UDP if l4.len() >= udp::LEN => {
            let (from, to) = (udp::src_port(l4), udp::dst_port(l4));
            let _ = write!(s, " udp {from} > {to}");
        }
        ipv4::PROTO_ICMP if !v6 && l4.len() >= icmp::LEN => {
            let what = match icmp::kind(l4) {
                icmp4::ECHO_REQUEST => "echo request",
                icmp4::ECHO_REPLY => "echo reply",
                icmp4::DEST_UNREACHABLE => "unreachable",
                icmp4::TIME_EXCEEDED => "time exceeded",
                _ => "",
            };
            let _ = write!(s, " icmp type {} {what}", icmp::kind(l4));
            if matches!(icmp::kind(l4), icmp4::ECHO_REQUEST | icmp4::ECHO_REPLY) {
                let _ = write!(s, " id {}", icmp::echo_ident(l4));
            }
        }
        ipv6::NEXT_ICMP if v6 && l4.len() >= icmp::LEN => {
            let what = match icmp::kind(l4) {
                icmp6::ECHO_REQUEST => "echo request",
                icmp6::ECHO_REPLY => "echo reply",
                icmp6::NEIGHBOR_SOLICIT => "neighbor solicitation",
                icmp6::NEIGHBOR_ADVERT => "neighbor advertisement",
                icmp6::PACKET_TOO_BIG => "packet too big",
                icmp6::DEST_UNREACHABLE => "unreachable",
                icmp6::TIME_EXCEEDED => "time exceeded",
                _ => "",
            };
            let _ = write!(s, " icmp6 type {} {what}", icmp::kind(l4));
        }
        p => {
            let _ = write!(s, " proto {p}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_udp_frame_reads_like_tcpdump() {
        let f = ::wire::testing::Udp4::new([192, 0, 2, 2], 40000, [203, 0, 113, 2], 53)
            .frame(&[2, 0, 0, 0, 0, 1], &[2, 0, 0, 0, 0, 2]);
        assert_eq!(
            frame(&f),
            "02:00:00:00:00:02 > 02:00:00:00:00:01 IPv4 192.0.2.2 > 203.0.113.2 ttl 64 \
             udp 40000 > 53, 42 bytes"
        );
        assert_eq!(frame(&f[..10]), "runt, 10 bytes");
        // Cut anywhere, it still describes without panicking.
        for len in 0..f.len() {
            let _ = frame(&f[..len]);
        }
    }
}
