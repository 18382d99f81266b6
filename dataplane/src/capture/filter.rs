//! Capture filters: a small expression language over the fields an operator filters by,
//! in tcpdump's words so that what works here works there too:
//!
//! ```text
//! expr      := term (("or" | "||") term)*
//! term      := factor (["and" | "&&"] factor)*
//! factor    := ("not" | "!") factor | "(" expr ")" | primitive
//! primitive := "ip" | "ip6" | "arp" | "tcp" | "udp" | "icmp" | "icmp6"
//!            | ["src" | "dst"] "host" ADDRESS
//!            | ["src" | "dst"] "net" PREFIX
//!            | ["src" | "dst"] "port" NUMBER
//! ```
//!
//! Why not BPF: a compiled BPF program needs libpcap (a C library linked into the
//! router) or a hand-written BPF compiler, while the worker has already validated the
//! headers and can answer these questions from them directly. The subset covers what a
//! capture on a router is narrowed by (protocol, address, prefix, port); anything else is
//! refused with the word that was not understood.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::wire::{eth, ipv4, ipv6, udp};

/// A compiled filter: `matches` runs in the worker for every frame of a captured port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Proto(Proto),
    Host(Side, IpAddr),
    Net(Side, IpNet),
    Port(Side, u16),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Ip,
    Ip6,
    Arp,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
}

/// Which end of the packet a primitive names: either, the source or the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Either,
    Src,
    Dst,
}

/// What a filter reads of a frame, found once per frame.
struct Fields {
    ethertype: u16,
    /// IPv4 protocol or IPv6 next header.
    proto: Option<u8>,
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    /// TCP/UDP ports, when the frame has them (not a later fragment).
    ports: Option<(u16, u16)>,
}

impl Fields {
    fn of(frame: &[u8]) -> Fields {
        let ethertype = if frame.len() >= eth::LEN {
            eth::ethertype(frame)
        } else {
            0
        };
        let mut f = Fields {
            ethertype,
            proto: None,
            src: None,
            dst: None,
            ports: None,
        };
        let ip = frame.get(eth::LEN..).unwrap_or_default();
        let l4 = match ethertype {
            eth::TYPE_IPV4 if ip.len() >= ipv4::MIN_LEN && ipv4::version(ip) == 4 => {
                f.proto = Some(ipv4::proto(ip));
                f.src = Some(IpAddr::V4(ipv4::src(ip)));
                f.dst = Some(IpAddr::V4(ipv4::dst(ip)));
                let later = ipv4::is_later_fragment(ip);
                (!later).then(|| ip.get(ipv4::header_len(ip)..)).flatten()
            }
            eth::TYPE_IPV6 if ip.len() >= ipv6::LEN && ipv6::version(ip) == 6 => {
                f.proto = Some(ipv6::next_header(ip));
                f.src = Some(IpAddr::V6(ipv6::src(ip)));
                f.dst = Some(IpAddr::V6(ipv6::dst(ip)));
                ip.get(ipv6::LEN..)
            }
            _ => None,
        };
        let has_ports = matches!(f.proto, Some(ipv4::PROTO_TCP | ipv4::PROTO_UDP));
        if let Some(t) = l4.filter(|t| has_ports && t.len() >= 4) {
            f.ports = Some((udp::src_port(t), udp::dst_port(t)));
        }
        f
    }
}

impl Filter {
    /// Compiles `text`; an empty text captures everything.
    pub fn parse(text: &str) -> Result<Filter, String> {
        let words = tokens(text);
        if words.is_empty() {
            return Ok(Filter::All);
        }
        let mut p = Parser { words, at: 0 };
        let f = p.expr()?;
        match p.words.get(p.at) {
            None => Ok(f),
            Some(w) => Err(format!("filter: unexpected {w:?}")),
        }
    }

    #[inline]
    pub fn matches(&self, frame: &[u8]) -> bool {
        match self {
            Filter::All => true,
            _ => self.eval(&Fields::of(frame)),
        }
    }

    fn eval(&self, f: &Fields) -> bool {
        let either = |side: Side, test: &dyn Fn(Option<IpAddr>) -> bool| match side {
            Side::Either => test(f.src) || test(f.dst),
            Side::Src => test(f.src),
            Side::Dst => test(f.dst),
        };
        match self {
            Filter::All => true,
            Filter::Proto(p) => match p {
                Proto::Ip => f.ethertype == eth::TYPE_IPV4,
                Proto::Ip6 => f.ethertype == eth::TYPE_IPV6,
                Proto::Arp => f.ethertype == eth::TYPE_ARP,
                Proto::Tcp => f.proto == Some(ipv4::PROTO_TCP),
                Proto::Udp => f.proto == Some(ipv4::PROTO_UDP),
                Proto::Icmp => f.ethertype == eth::TYPE_IPV4 && f.proto == Some(ipv4::PROTO_ICMP),
                Proto::Icmp6 => f.ethertype == eth::TYPE_IPV6 && f.proto == Some(ipv6::NEXT_ICMP),
            },
            Filter::Host(side, a) => either(*side, &|x| x == Some(*a)),
            Filter::Net(side, n) => either(*side, &|x| x.is_some_and(|x| n.contains(&x))),
            Filter::Port(side, port) => match (side, f.ports) {
                (_, None) => false,
                (Side::Either, Some((s, d))) => s == *port || d == *port,
                (Side::Src, Some((s, _))) => s == *port,
                (Side::Dst, Some((_, d))) => d == *port,
            },
            Filter::Not(a) => !a.eval(f),
            Filter::And(a, b) => a.eval(f) && b.eval(f),
            Filter::Or(a, b) => a.eval(f) || b.eval(f),
        }
    }
}

/// Words, with parentheses and `!` as words of their own.
fn tokens(text: &str) -> Vec<String> {
    let spaced = text
        .replace('(', " ( ")
        .replace(')', " ) ")
        .replace("&&", " and ")
        .replace("||", " or ")
        .replace('!', " not ");
    spaced.split_whitespace().map(str::to_lowercase).collect()
}

struct Parser {
    words: Vec<String>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.words.get(self.at).map(String::as_str)
    }

    fn next(&mut self, what: &str) -> Result<String, String> {
        let w = self.words.get(self.at).cloned();
        self.at += 1;
        w.ok_or_else(|| format!("filter: {what} expected at the end"))
    }

    fn expr(&mut self) -> Result<Filter, String> {
        let mut f = self.term()?;
        while self.peek() == Some("or") {
            self.at += 1;
            f = Filter::Or(Box::new(f), Box::new(self.term()?));
        }
        Ok(f)
    }

    fn term(&mut self) -> Result<Filter, String> {
        let mut f = self.factor()?;
        // "and" may be left out, as tcpdump allows: `udp port 53`.
        loop {
            match self.peek() {
                Some("and") => self.at += 1,
                Some("or" | ")") | None => return Ok(f),
                Some(_) => {}
            }
            f = Filter::And(Box::new(f), Box::new(self.factor()?));
        }
    }

    fn factor(&mut self) -> Result<Filter, String> {
        let w = self.next("a primitive")?;
        let side = match w.as_str() {
            "not" => return Ok(Filter::Not(Box::new(self.factor()?))),
            "(" => {
                let f = self.expr()?;
                return match self.next("\")\"")?.as_str() {
                    ")" => Ok(f),
                    other => Err(format!("filter: \")\" expected, not {other:?}")),
                };
            }
            "src" => Some(Side::Src),
            "dst" => Some(Side::Dst),
            _ => None,
        };
        let w = match side {
            Some(_) => self.next("host, net or port")?,
            None => w,
        };
        let side = side.unwrap_or(Side::Either);
        let proto = |p| {
            if side == Side::Either {
                Ok(Filter::Proto(p))
            } else {
                Err(format!("filter: src/dst cannot qualify {w:?}"))
            }
        };
        match w.as_str() {
            "ip" => proto(Proto::Ip),
            "ip6" => proto(Proto::Ip6),
            "arp" => proto(Proto::Arp),
            "tcp" => proto(Proto::Tcp),
            "udp" => proto(Proto::Udp),
            "icmp" => proto(Proto::Icmp),
            "icmp6" => proto(Proto::Icmp6),
            "host" => {
                let a = self.next("an address")?;
                let a = a
                    .parse()
                    .map_err(|_| format!("filter: bad address {a:?}"))?;
                Ok(Filter::Host(side, a))
            }
            "net" => {
                let n = self.next("a prefix")?;
                let n: IpNet = n.parse().map_err(|_| format!("filter: bad prefix {n:?}"))?;
                Ok(Filter::Net(side, n.trunc()))
            }
            "port" => {
                let p = self.next("a port")?;
                let p = p.parse().map_err(|_| format!("filter: bad port {p:?}"))?;
                Ok(Filter::Port(side, p))
            }
            other => Err(format!("filter: {other:?} is not understood")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        ::wire::testing::Udp4::new(src, sport, dst, dport).frame(&[2; 6], &[4; 6])
    }

    #[test]
    fn primitives_and_combinations_match_what_tcpdump_would() {
        let f = udp_frame([192, 0, 2, 2], 5353, [203, 0, 113, 9], 53);
        let yes = [
            "",
            "udp",
            "ip",
            "host 192.0.2.2",
            "src host 192.0.2.2",
            "dst net 203.0.113.0/24",
            "port 53",
            "dst port 53",
            "src port 5353",
            "udp and port 53",
            "tcp or udp",
            "not tcp",
            "!(tcp || icmp) && net 192.0.2.0/24",
            "UDP AND (PORT 53)",
            "udp port 53",
        ];
        for text in yes {
            let filter = Filter::parse(text).expect(text);
            assert!(filter.matches(&f), "{text:?} should match");
        }
        let no = [
            "tcp",
            "ip6",
            "arp",
            "icmp",
            "dst host 192.0.2.2",
            "src net 203.0.113.0/24",
            "port 80",
            "src port 53",
            "udp and not port 53",
            "host 2001:db8::1",
        ];
        for text in no {
            let filter = Filter::parse(text).expect(text);
            assert!(!filter.matches(&f), "{text:?} should not match");
        }
    }

    #[test]
    fn a_bad_filter_is_refused_with_the_word() {
        for (text, word) in [
            ("udp and", "expected"),
            ("port http", "http"),
            ("host 300.1.1.1", "300.1.1.1"),
            ("vlan 7", "vlan"),
            ("(udp", "\")\""),
            ("udp )", "unexpected"),
            ("src tcp", "tcp"),
        ] {
            let e = Filter::parse(text).expect_err(text);
            assert!(e.contains(word), "{text:?}: {e}");
        }
    }

    #[test]
    fn runts_and_garbage_never_match_a_field_and_never_panic() {
        let filter = Filter::parse("host 192.0.2.2 or port 53 or icmp6").expect("filter");
        let mut rng = ::wire::XorShift64::new(0x5eed);
        for len in 0..200 {
            let mut f: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if len > 14 {
                f[12..14].copy_from_slice(&eth::TYPE_IPV4.to_be_bytes());
            }
            let _ = filter.matches(&f);
        }
        assert!(!filter.matches(&[]));
    }
}
