//! Which shard owns a packet's session, when several workers each run a shard.
//!
//! Both directions of a flow must meet the shard that holds its session, but a frame
//! reaches whichever worker its receive queue belongs to. The worker asks `steer` first
//! and hands the frame over when the answer is another shard. The owner is a function of
//! the packet alone (plus the port map, which every shard shares), so both directions
//! compute the same one without asking anybody:
//!
//! * an inside host's flows belong to its *home* shard, a hash of its address: its
//!   mappings (endpoint independence, RFC 4787 REQ-1), paired external address and
//!   quotas live in one place;
//! * a packet from the outside for an external port belongs to the shard whose mapping
//!   holds that port (the port map's owner word); one inside host's packet to another's
//!   mapping is its own home's, which translates the source and sends it round to the
//!   mapping's shard as if from the outside (`Pre::Recirculate`);
//! * a DNAT flow belongs to the client's home: its first packet (to the frontend) and the
//!   backend's replies (from the backend's endpoint to the client) both hash the client;
//! * an ICMP error belongs where the packet it quotes came from (the quote reversed);
//! * a later fragment, which has no ports, follows its first fragment: this shard
//!   remembers where it sent the first one, and holds later fragments that come before it.
//!
//! With one shard every packet is this shard's, and `steer` costs one comparison.

use crate::flow::{self, Flow, Fragment, L4};
use crate::ports::Space;
use crate::shard::{datagram_key, Lookahead, Shard, Side};

impl Shard {
    /// The shard (`0..shards`) that owns the session of the IPv4 packet `ip`, read by
    /// `lookahead` and received on `side`. `self.id()` means "handle it here". A first
    /// fragment handed elsewhere is remembered so that its later fragments follow.
    pub fn steer(
        &mut self,
        ip: &[u8],
        ahead: &Lookahead,
        side: Side,
        shards: usize,
        now: u64,
    ) -> usize {
        if shards <= 1 {
            return self.id;
        }
        let Ok(p) = ahead.parsed else {
            return self.id;
        };
        match p.fragment {
            Fragment::Later => {
                let key = datagram_key(&p.flow, p.ident);
                self.owner_by_address(&p.flow, side, shards)
                    .or_else(|| self.frags.owner(&key))
                    .unwrap_or(self.id)
            }
            Fragment::Whole | Fragment::First => {
                let owner = if p.l4 == L4::IcmpError {
                    self.owner_of_error(ip, p.l4_offset, side, shards)
                } else {
                    self.owner_of_flow(&p.flow, side, shards)
                };
                if p.fragment == Fragment::First && owner != self.id {
                    let timeout = self.rules.timeouts.fragment;
                    self.frags
                        .hand_to(datagram_key(&p.flow, p.ident), owner, now, timeout);
                }
                owner
            }
        }
    }

    /// The home shard of an address: where its flows' state lives.
    pub fn home(&self, addr: u32, shards: usize) -> usize {
        let h = crate::maglev::mix(self.rules.seed ^ 0x5851_f42d_4c95_7f2d ^ addr as u64);
        (h % shards.max(1) as u64) as usize
    }

    /// The owner of a packet with ports (a whole packet or a first fragment).
    fn owner_of_flow(&self, flow: &Flow, side: Side, shards: usize) -> usize {
        let port_owner = || {
            self.ports
                .owner(flow.dst, Space::of(flow.proto), flow.dport)
        };
        match side {
            Side::Inside => {
                if self.rules.frontend(flow).is_some() {
                    // NAT loopback: a hairpin the sender's home makes with its mapping.
                    return self.home(flow.src, shards);
                }
                let backend = self.rules.is_backend(flow.proto, flow.src, flow.sport);
                if backend {
                    if let Some(owner) = port_owner() {
                        // A backend answering a loopback client through the client's
                        // mapping: the loopback session is the client's home's.
                        return owner;
                    }
                    // A backend's reply to a DNAT client.
                    return self.home(flow.dst, shards);
                }
                // Everything else from an inside host, to another inside host's mapping
                // too: its home does the source half with the host's one mapping, and a
                // packet for a mapping goes round to the mapping's shard from there.
                self.home(flow.src, shards)
            }
            Side::Outside => {
                if self.rules.frontend(flow).is_some() {
                    return self.home(flow.src, shards);
                }
                // Through a mapping; an unmapped port is handled (held, refused) here.
                port_owner().unwrap_or(self.id)
            }
        }
    }

    /// The owner of an ICMP error: the owner of a packet going the other way than the one
    /// it quotes, on the same side (the quoted packet left by that side).
    fn owner_of_error(&self, ip: &[u8], l4_offset: usize, side: Side, shards: usize) -> usize {
        let quoted = ip.get(l4_offset + 8..).and_then(flow::parse_quoted);
        match quoted {
            Some((q, _)) => self.owner_of_flow(&q.reversed(), side, shards),
            // Unreadable: dropped by whoever looks, so here.
            None => self.id,
        }
    }

    /// The owner of a later fragment when its addresses alone decide it (no rule that
    /// needs a port applies to them), else `None`: then it follows its first fragment.
    fn owner_by_address(&self, flow: &Flow, side: Side, shards: usize) -> Option<usize> {
        let needs_port =
            self.ports.is_external(flow.dst) || self.rules.is_frontend_address(flow.dst);
        match side {
            Side::Inside if needs_port || self.rules.is_backend_address(flow.src) => None,
            Side::Inside => Some(self.home(flow.src, shards)),
            Side::Outside if needs_port => None,
            Side::Outside => Some(self.id),
        }
    }
}
