//! ICMP errors about NATed flows (RFC 5508 §3–4): the error is matched to its session
//! through the packet it quotes, then the outer header, the quoted header and its ports,
//! and every checksum (outer IPv4, quoted IPv4, quoted transport, ICMP) are rewritten so
//! the receiver sees the packet it really sent. Errors never create, refresh or end a
//! session; errors with a bad ICMP checksum, or to a pool address about no session, are
//! dropped.

use crate::flow::{self, Flow, Fragment, Parsed, ICMP, L4, TCP, UDP};
use crate::ports::Space;
use crate::rewrite::rewrite;
use crate::shard::{target, Pre, Reason, Shard};
use crate::table::{Handle, Kind, Session};

impl Shard {
    /// Translates the ICMP error `ip` (parsed as `p`) if it is about a session.
    pub(crate) fn icmp_error(&mut self, ip: &mut [u8], p: &Parsed) -> Pre {
        match self.translate_error(ip, p) {
            Ok(Some((h, s))) => {
                self.stats.icmp_errors_translated += 1;
                if s.kind == Kind::Hairpin && !h.reply {
                    // From an inside host about a packet another inside host sent it: now
                    // addressed to that host's mapping, round to the shard that holds it.
                    let t = target(&s, h.reply);
                    return Pre::Recirculate {
                        session: h,
                        owner: self.mapping_owner(t.dst, Space::of(t.proto), t.dport),
                    };
                }
                Pre::Pass
            }
            Ok(None) if self.rules().pool.contains(&p.flow.dst) => Pre::Drop(Reason::IcmpNoFlow),
            Ok(None) => Pre::Pass,
            Err(r) => Pre::Drop(r),
        }
    }

    /// Translates an ICMP error tern itself built (time exceeded, too big, unreachable)
    /// about a packet it had already translated, so the quote shows what the receiver sent.
    pub fn originated_error(&mut self, ip: &mut [u8]) {
        if let Ok(p) = flow::parse(ip) {
            if p.l4 == L4::IcmpError {
                let _ = self.translate_error(ip, &p);
            }
        }
    }

    /// Ok(Some): translated, by this session; Ok(None): about no session of ours.
    fn translate_error(
        &mut self,
        ip: &mut [u8],
        p: &Parsed,
    ) -> Result<Option<(Handle, Session)>, Reason> {
        if p.fragment != Fragment::Whole {
            return Ok(None);
        }
        let o = p.l4_offset;
        let end = wire::ipv4::total_len(ip).min(ip.len());
        if end < o + 8 {
            return Err(Reason::Truncated);
        }
        let Some((quoted, qihl)) = flow::parse_quoted(&ip[o + 8..end]) else {
            return Ok(None);
        };
        let Some(h) = self.sessions.find(&quoted.reversed()) else {
            return Ok(None);
        };
        let Some(s) = self.sessions.get(h).copied() else {
            return Ok(None);
        };
        if wire::checksum(&ip[o..end]) != 0 {
            return Err(Reason::IcmpBadChecksum);
        }
        // The quoted packet went the other way and was translated: restore what its
        // sender sent.
        let restored = if h.reply { s.orig } else { s.reply };
        let q = &mut ip[o + 8..end];
        let qp = Parsed {
            flow: quoted,
            l4: match quoted.proto {
                TCP => L4::Tcp { flags: 0 },
                UDP => L4::Udp,
                ICMP => L4::IcmpQuery {
                    request: q[qihl] == wire::icmp4::ECHO_REQUEST,
                },
                _ => L4::Other,
            },
            l4_offset: qihl,
            fragment: Fragment::Whole,
            ident: 0,
        };
        rewrite(q, &qp, &restored);
        wire::icmp::fill_checksum4(&mut ip[o..end]);
        // The outer header travels like a packet of the error's direction. Its source is
        // translated when that direction's source is (an inside router's error leaves
        // with the external address too).
        let arriving = quoted.reversed();
        let t = target(&s, h.reply);
        let outer = Flow {
            src: if t.src != arriving.src {
                t.src
            } else {
                p.flow.src
            },
            dst: t.dst,
            ..p.flow
        };
        rewrite(ip, p, &outer);
        Ok(Some((h, s)))
    }
}
