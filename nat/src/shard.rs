//! One worker's NAT: its session table, mappings, fragment memory and held SYNs, and the
//! two pipeline entry points.
//!
//! * `prerouting`, before the FIB: finds the packet's session (either direction) and
//!   applies the destination half of its translation (DNAT, or the return path of SNAT),
//!   so the FIB routes the real destination. New sessions that start from the outside are
//!   made here: inbound through a mapping (filtering permitting), DNAT to a frontend's
//!   backend, hairpin from the inside to an external mapping or a forward.
//! * `postrouting`, after TTL and MTU: applies the source half (SNAT), creating an SNAT
//!   session for a new flow from an inside to an outside interface.
//!
//! ICMP errors are translated whole in `prerouting` (icmp.rs), and never create, refresh
//! or end a session (RFC 5508 REQ-1/2).

use std::sync::Arc;

use crate::flow::{self, Flow, Fragment, Parsed, ACK, ICMP, L4, SYN, TCP, UDP};
use crate::frag::{DatagramKey, Fragments, Verdict};
use crate::mapping::Mappings;
use crate::ports::{class_range, PortMap, Space};
use crate::rewrite::rewrite;
use crate::rules::{Endpoint, Filtering, Rules};
use crate::subscriber::SubscriberId;
use crate::table::{Class, Handle, Kind, Session, Sessions, CLASSES, NONE};
use crate::tcp::Track;

/// Where a packet came in, by the interface roles of the NAT configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Inside,
    Outside,
}

/// Why the NAT dropped or refused a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The transport header is cut short (or the first fragment is too short for it).
    Truncated,
    /// Inbound to a pool address with no mapping behind it.
    NoMapping,
    /// Inbound to a mapping whose filtering does not admit the sender.
    Filtered,
    /// A frontend with no backend up.
    NoBackend,
    /// The session table is full and nothing could be early-dropped.
    TableFull,
    /// No free external port in the class.
    PortsExhausted,
    /// The inside host is at its session quota.
    SessionQuota,
    /// The inside host is at its port quota.
    PortQuota,
    /// An ICMP error with a wrong checksum.
    IcmpBadChecksum,
    /// An ICMP error to a pool address about no session.
    IcmpNoFlow,
    /// A fragment overlapping another of its datagram.
    FragmentOverlap,
    /// An early fragment that could not be held (hold list full).
    FragmentHoldFull,
    /// An unsolicited SYN that could not be held (hold list full), or a repeat of one held.
    SynNotHeld,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pre {
    /// Nothing for the NAT: route as it is.
    Pass,
    /// Belongs to this session; its destination is translated. Hand it to `postrouting`.
    Session(Handle),
    Drop(Reason),
    /// The NAT kept a copy (an unsolicited SYN, an early fragment): free the frame.
    Held,
    /// No session could be created: drop and answer ICMP 3/13 (RFC 5508 REQ-8).
    Refuse(Reason),
    /// From one inside host to another's mapping: the source half is done here, so the
    /// packet now goes from one of our external endpoints to another. Run it through
    /// pre-routing again as if it came in by an outside interface, on shard `owner` (this
    /// one or another), which holds the mapping it is sent to and translates the
    /// destination. Each inside host keeps the one mapping its home shard gave it, however
    /// many workers there are (RFC 4787 REQ-1 and REQ-9a).
    Recirculate {
        session: Handle,
        owner: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Post {
    Pass,
    Translated,
    Drop(Reason),
    Refuse(Reason),
}

/// Per-shard counts of what happened (drops are counted by the dataplane per reason).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub created: u64,
    pub expired: u64,
    pub early_dropped: u64,
    pub deleted: u64,
    pub syns_held: u64,
    pub syns_answered: u64,
    pub fragments_held: u64,
    pub fragments_timed_out: u64,
    pub icmp_errors_translated: u64,
}

/// A packet as `Shard::lookahead` read it: parsed, and its flow hashed for the lookup.
#[derive(Debug, Clone, Copy)]
pub struct Lookahead {
    pub(crate) parsed: Result<Parsed, flow::ParseError>,
    hash: Option<u64>,
}

impl Lookahead {
    /// The parsing half of `Shard::lookahead`: the packet read, not yet hashed.
    #[inline]
    pub fn read(ip: &[u8]) -> Lookahead {
        Lookahead {
            parsed: flow::parse(ip),
            hash: None,
        }
    }
}

impl Default for Lookahead {
    /// A packet too short to read (what an unused burst slot holds).
    fn default() -> Lookahead {
        Lookahead {
            parsed: Err(flow::ParseError::Truncated),
            hash: None,
        }
    }
}

/// An unsolicited inbound SYN waiting out its 6 s (RFC 5382 REQ-4).
struct HeldSyn {
    flow: Flow,
    until: u64,
    tag: u16,
    packet: Vec<u8>,
}
const MAX_HELD_SYNS: usize = 64;
/// Bytes of a held SYN kept for the ICMP error's quote.
const HELD_SYN_BYTES: usize = 128;

/// Most expired sessions reclaimed per `expire` call (bounded work per burst).
pub const EXPIRE_BUDGET: usize = 64;
/// Random probes for a free port before a bounded linear scan.
const RANDOM_PROBES: usize = 32;
const LINEAR_PROBES: usize = 2048;

pub struct Shard {
    pub(crate) id: usize,
    pub(crate) rules: Arc<Rules>,
    pub(crate) ports: Arc<PortMap>,
    pub(crate) sessions: Sessions,
    pub(crate) mappings: Mappings,
    pub(crate) frags: Fragments,
    held_syns: Vec<HeldSyn>,
    pub stats: Stats,
    rng: u64,
}

/// Whether a packet of session `h` (of `kind`, `None` when it is gone) that came in on
/// `side` goes round (`Pre::Recirculate`): one from the inside in the original direction
/// of a `Kind::Hairpin` session.
#[inline(always)]
fn goes_round(kind: Option<Kind>, h: Handle, side: Side) -> bool {
    side == Side::Inside && !h.reply && kind == Some(Kind::Hairpin)
}

/// The flow a packet of direction `reply` leaves as.
#[inline]
pub(crate) fn target(s: &Session, reply: bool) -> Flow {
    if reply {
        s.orig.reversed()
    } else {
        s.reply.reversed()
    }
}

fn class_of(proto: u8, tcp: &Track) -> Class {
    match proto {
        TCP if tcp.established() => Class::TcpEstablished,
        TCP => Class::TcpTransitory,
        UDP => Class::Udp,
        ICMP => Class::Icmp,
        _ => Class::Other,
    }
}

pub(crate) fn datagram_key(f: &Flow, ident: u16) -> DatagramKey {
    DatagramKey {
        src: f.src,
        dst: f.dst,
        proto: f.proto,
        ident,
    }
}

/// The byte range of a fragment's payload within its datagram.
fn fragment_range(ip: &[u8]) -> (u32, u32) {
    let ihl = wire::ipv4::header_len(ip);
    let start = (wire::ipv4::flags_frag(ip) & wire::ipv4::OFFSET_MASK) as u32 * 8;
    let len = wire::ipv4::total_len(ip).saturating_sub(ihl) as u32;
    (start, start + len)
}

impl Shard {
    pub fn new(id: usize, rules: Arc<Rules>, ports: Arc<PortMap>) -> Shard {
        let seed = ahash::RandomState::new().hash_one(id) | 1;
        Shard {
            id,
            sessions: Sessions::new(rules.capacity),
            mappings: Mappings::new(rules.capacity),
            frags: Fragments::new(),
            held_syns: Vec::new(),
            stats: Stats::default(),
            rng: seed,
            rules,
            ports,
        }
    }

    pub fn id(&self) -> usize {
        self.id
    }
    pub fn rules(&self) -> &Arc<Rules> {
        &self.rules
    }
    pub fn ports(&self) -> &Arc<PortMap> {
        &self.ports
    }
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }
    pub fn mappings(&self) -> &Mappings {
        &self.mappings
    }

    /// New rules from the control plane. Sessions stay; new flows follow the new rules.
    pub fn set_rules(&mut self, rules: Arc<Rules>) {
        self.rules = rules;
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: seeded per shard from the process-random ahash state.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545f4914f6cdd1d)
    }

    fn timeout(&self, class: Class) -> u64 {
        self.rules.timeouts.idle(class)
    }

    // ---- burst lookahead ----------------------------------------------------------------

    /// First pass over a burst: parses the packet, hashes its flow and starts loading the
    /// flow's index bucket. With a million sessions each lookup would otherwise wait for
    /// two cache (and TLB) misses in turn; started for a whole burst first, they overlap.
    /// Hand the result to `prefetch_session`, then to `prerouting_ahead` with the packet
    /// unchanged.
    #[inline]
    pub fn lookahead(&self, ip: &[u8]) -> Lookahead {
        let parsed = flow::parse(ip);
        let hash = self.start_lookup(&parsed);
        Lookahead { parsed, hash }
    }

    /// The hashing half of `lookahead`, for a packet `Lookahead::read` parsed and `steer`
    /// kept here (a packet handed to another shard is not hashed at all).
    #[inline]
    pub fn hash_ahead(&self, ahead: &mut Lookahead) {
        ahead.hash = self.start_lookup(&ahead.parsed);
    }

    /// Hashes a packet's flow and starts loading its index bucket, for the packets
    /// pre-routing looks up whole (not a later fragment, not an ICMP error).
    #[inline(always)]
    fn start_lookup(&self, parsed: &Result<Parsed, flow::ParseError>) -> Option<u64> {
        match parsed {
            Ok(p) if p.fragment != Fragment::Later && p.l4 != L4::IcmpError => {
                let hash = self.sessions.hash(&p.flow);
                self.sessions.prefetch_bucket(hash);
                Some(hash)
            }
            _ => None,
        }
    }

    /// Second pass, after `lookahead` for the whole burst: starts loading the session the
    /// bucket names.
    ///
    /// A packet from the inside whose bucket names no session is most likely the first of
    /// a new flow: its SNAT will look up the inside endpoint's mapping, take the kept port
    /// or, if another host has it, the first replacement (`first_probe`), and insert the
    /// external endpoint and the reply key. Those lines are started now too, for both
    /// candidate ports, so they load while the rest of the burst is read instead of one
    /// after another. `masquerade` is the address SNAT will
    /// most likely use without a pool (the outside interface's, when there is one).
    #[inline]
    pub fn prefetch_session(&self, l: &Lookahead, side: Side, masquerade: Option<u32>) {
        let Some(hash) = l.hash else {
            return;
        };
        if self.sessions.prefetch_session(hash) || side != Side::Inside {
            return;
        }
        if let Ok(p) = &l.parsed {
            self.prefetch_new_flow(p.flow, masquerade);
        }
    }

    /// `prefetch_session`'s part for a likely new flow: out of line, so that the
    /// established flows' burst loop stays small.
    #[inline(never)]
    fn prefetch_new_flow(&self, flow: Flow, masquerade: Option<u32>) {
        let external = match (self.rules.pool.is_empty(), masquerade) {
            // The host's paired address unless the pool changed since its first mapping:
            // a prefetch is only a hint.
            (false, _) => self.pool_pick(flow.src),
            (true, Some(a)) => a,
            (true, None) => return,
        };
        let inside = Endpoint {
            addr: flow.src,
            port: flow.sport,
        };
        self.mappings.prefetch_inside(flow.proto, inside);
        self.prefetch_external_port(flow, external, flow.sport);
        // Where the kept port is taken (several hosts behind one address), `first_probe`
        // is tried next: misses into the port map and two indices otherwise.
        if let Some(port) = self.first_probe(flow.proto, inside) {
            self.prefetch_external_port(flow, external, port);
        }
    }

    /// Starts loading what taking `port` on `external` for `flow`'s new mapping touches:
    /// the port-map word, the mapping index bucket of the external endpoint, and the
    /// session index bucket of the reply key.
    #[inline]
    fn prefetch_external_port(&self, flow: Flow, external: u32, port: u16) {
        self.ports.prefetch(external, Space::of(flow.proto), port);
        let endpoint = Endpoint {
            addr: external,
            port,
        };
        self.mappings.prefetch_external(flow.proto, endpoint);
        let reply = Flow {
            proto: flow.proto,
            src: flow.dst,
            dst: external,
            sport: flow.dport,
            dport: port,
        };
        self.sessions.prefetch_bucket(self.sessions.hash(&reply));
    }

    // ---- pre-routing ------------------------------------------------------------------

    /// Pre-routing for the IPv4 packet `ip` that came in on `side`. `tag` is returned with
    /// anything the NAT holds and later gives back (the dataplane puts its port there).
    pub fn prerouting(&mut self, ip: &mut [u8], side: Side, tag: u16, now: u64) -> Pre {
        let ahead = self.lookahead(ip);
        self.prerouting_ahead(ip, &ahead, side, tag, now)
    }

    /// `prerouting` for a packet `lookahead` has read (unchanged since).
    pub fn prerouting_ahead(
        &mut self,
        ip: &mut [u8],
        ahead: &Lookahead,
        side: Side,
        tag: u16,
        now: u64,
    ) -> Pre {
        let p = match ahead.parsed {
            Ok(p) => p,
            Err(flow::ParseError::Truncated) => return Pre::Drop(Reason::Truncated),
        };
        match p.fragment {
            Fragment::Later => return self.later_fragment(ip, &p, tag, now),
            Fragment::First => {
                let (_, end) = fragment_range(ip);
                let key = datagram_key(&p.flow, p.ident);
                let timeout = self.rules.timeouts.fragment;
                if !self.frags.first(key, end, now, timeout) {
                    return Pre::Drop(Reason::FragmentOverlap);
                }
            }
            Fragment::Whole => {}
        }
        if p.l4 == L4::IcmpError {
            return self.icmp_error(ip, &p);
        }
        // `lookahead` hashed every packet that gets this far (whole or first fragment, not an
        // ICMP error).
        let found = ahead
            .hash
            .and_then(|hash| self.sessions.find_hashed(&p.flow, hash));
        let verdict = match self.live(found, now) {
            Some(h) => {
                self.refresh(h, &p, now);
                let kind = self.translate_destination(ip, &p, h);
                if goes_round(kind, h, side) {
                    self.recirculate(ip, Some(p), h)
                } else {
                    Pre::Session(h)
                }
            }
            None => self.new_from_outside(ip, &p, side, tag, now),
        };
        if p.fragment == Fragment::First {
            if let Pre::Session(h) | Pre::Recirculate { session: h, .. } = verdict {
                self.frags
                    .set_session(datagram_key(&p.flow, p.ident), Some(h));
            }
        }
        verdict
    }

    fn later_fragment(&mut self, ip: &mut [u8], p: &Parsed, tag: u16, now: u64) -> Pre {
        let key = datagram_key(&p.flow, p.ident);
        let (start, end) = fragment_range(ip);
        let timeout = self.rules.timeouts.fragment;
        match self.frags.later(key, start, end, now, timeout) {
            Verdict::Overlap => Pre::Drop(Reason::FragmentOverlap),
            Verdict::Known(None) => Pre::Pass,
            // A later fragment of a hairpin's original direction came from the inside.
            Verdict::Known(Some(h)) => match self.translate_destination(ip, p, h) {
                None => Pre::Pass,
                kind if goes_round(kind, h, Side::Inside) => self.recirculate(ip, None, h),
                Some(_) => Pre::Session(h),
            },
            Verdict::Hold => {
                if self.frags.hold(key, (start, end), tag, ip, now, timeout) {
                    self.stats.fragments_held += 1;
                    Pre::Held
                } else {
                    Pre::Drop(Reason::FragmentHoldFull)
                }
            }
        }
    }

    /// The source half of a packet that goes round (see `goes_round`), and
    /// `Pre::Recirculate` to the shard that holds the mapping it goes to. `read` is the
    /// packet's reading, as for `source_half`. Out of line: the established path only
    /// tests `goes_round`.
    #[inline(never)]
    fn recirculate(&mut self, ip: &mut [u8], read: Option<Parsed>, h: Handle) -> Pre {
        let Some(s) = self.sessions.get(h) else {
            return Pre::Pass;
        };
        // It leaves as `reply.reversed()`: to `reply.src`, the other host's mapping.
        let to = (s.reply.src, Space::of(s.reply.proto), s.reply.sport);
        match self.source_half(ip, h, read) {
            Post::Translated => {}
            Post::Drop(r) | Post::Refuse(r) => return Pre::Drop(r),
            Post::Pass => return Pre::Pass,
        }
        Pre::Recirculate {
            session: h,
            owner: self.mapping_owner(to.0, to.1, to.2),
        }
    }

    /// The shard whose mapping holds an external port; this one when none does (the
    /// mapping went since: the outside-side pre-routing of any shard drops it as
    /// unmapped).
    pub(crate) fn mapping_owner(&self, addr: u32, space: Space, port: u16) -> usize {
        self.ports.owner(addr, space, port).unwrap_or(self.id)
    }

    /// The session found, unless it has expired: then it is reclaimed here.
    fn live(&mut self, found: Option<Handle>, now: u64) -> Option<Handle> {
        let h = found?;
        let s = self.sessions.get(h)?;
        if now.saturating_sub(s.last) >= self.timeout(s.class) {
            self.remove(h.index, now);
            self.stats.expired += 1;
            return None;
        }
        Some(h)
    }

    fn refresh(&mut self, h: Handle, p: &Parsed, now: u64) {
        let Some(s) = self.sessions.get_mut(h) else {
            return;
        };
        let mut refusal = false;
        if let L4::Tcp { flags } = p.l4 {
            s.tcp.see(flags, !h.reply);
            refusal = flags & flow::RST != 0;
        }
        // A reset is the remote refusing the flow, not answering it: the session stays
        // "never replied" (early drop may take it) and its port is not held down.
        let first_reply = h.reply && !s.replied && !refusal;
        if first_reply {
            s.replied = true;
        }
        s.packets += 1;
        let class = class_of(s.orig.proto, &s.tcp);
        self.sessions.touch(h.index, class, now);
        if first_reply {
            self.mappings.mark_answered(self.sessions.mapping(h.index));
        }
    }

    /// Gives the packet session `h`'s destination; returns the session's kind (`None`
    /// when the session is gone).
    fn translate_destination(&self, ip: &mut [u8], p: &Parsed, h: Handle) -> Option<Kind> {
        let s = self.sessions.get(h)?;
        let t = target(s, h.reply);
        if t.dst != p.flow.dst || t.dport != p.flow.dport {
            let to = Flow {
                dst: t.dst,
                dport: t.dport,
                ..p.flow
            };
            rewrite(ip, p, &to);
        }
        Some(s.kind)
    }

    /// The source half of session `h`'s translation. `read` is the packet's reading, if
    /// there is one: taken by pre-routing, after which the packet was given the session's
    /// destination (every way to `Pre::Session` ends in `translate_destination`) and is
    /// otherwise as read.
    #[inline(always)]
    fn source_half(&self, ip: &mut [u8], h: Handle, read: Option<Parsed>) -> Post {
        let Some(s) = self.sessions.get(h) else {
            return Post::Pass;
        };
        let t = target(s, h.reply);
        let p = match read {
            Some(p) => Parsed {
                flow: Flow {
                    dst: t.dst,
                    dport: t.dport,
                    ..p.flow
                },
                ..p
            },
            None => match flow::parse(ip) {
                Ok(p) => p,
                Err(_) => return Post::Drop(Reason::Truncated),
            },
        };
        if t.src != p.flow.src || t.sport != p.flow.sport {
            let to = Flow {
                src: t.src,
                sport: t.sport,
                ..p.flow
            };
            rewrite(ip, &p, &to);
        }
        Post::Translated
    }

    /// A packet with no session: a frontend's new flow, an inbound flow through a mapping,
    /// a hairpin, an unsolicited SYN, or none of the NAT's business.
    fn new_from_outside(
        &mut self,
        ip: &mut [u8],
        p: &Parsed,
        side: Side,
        tag: u16,
        now: u64,
    ) -> Pre {
        let flow = p.flow;
        if let Some(f) = self.rules.frontend(&flow) {
            let Some(backend) = f.pick(self.rules.flow_hash(&flow)) else {
                return Pre::Drop(Reason::NoBackend);
            };
            if matches!(side, Side::Inside) {
                // An inside host using the forward's external address ("NAT loopback"): a
                // hairpin, so the backend sees (and answers) an external source, not an
                // inside address it would reply to directly.
                return self.loopback(ip, p, backend, now);
            }
            let reply = Flow {
                proto: flow.proto,
                src: backend.addr,
                dst: flow.src,
                sport: backend.port,
                dport: flow.sport,
            };
            return match self.create(flow, reply, NONE, Kind::Dnat, None, p, now) {
                Ok(h) => {
                    self.translate_destination(ip, p, h);
                    Pre::Session(h)
                }
                Err(r) => Pre::Refuse(r),
            };
        }
        if !self.ports.is_external(flow.dst) || matches!(p.l4, L4::IcmpQuery { request: true }) {
            return Pre::Pass;
        }
        if side == Side::Inside {
            // To another inside host's mapping (a port some shard's mapping holds), or to
            // tern's own address (a port nobody maps: the local stack's).
            let mapped = self
                .ports
                .owner(flow.dst, Space::of(flow.proto), flow.dport);
            if mapped.is_none() {
                return Pre::Pass;
            }
            // The new session's remote is our own endpoint: a `Kind::Hairpin`, round.
            return match self.new_snat(p, flow.dst, now) {
                Ok(h) => self.recirculate(ip, Some(*p), h),
                Err(r) => Pre::Refuse(r),
            };
        }
        let external = Endpoint {
            addr: flow.dst,
            port: flow.dport,
        };
        let mapped = self.mappings.by_external(flow.proto, external);
        let Some((mi, m)) = mapped.and_then(|mi| Some((mi, *self.mappings.get(mi)?))) else {
            return self.unmapped(ip, p, tag, now);
        };
        // From one of our own external endpoints: an inside host's packet gone
        // round (`Pre::Recirculate`). Filtering is for the outside; between inside
        // hosts it does not apply (RFC 4787 REQ-9).
        let admitted = self.ports.is_external(flow.src)
            || match self.rules.filtering {
                Filtering::EndpointIndependent => true,
                Filtering::AddressDependent => self.mappings.has_sent_to(mi, flow.src),
                // An exact match would have been found as a session already.
                Filtering::AddressAndPortDependent => false,
            };
        if !admitted {
            return self.unsolicited(ip, p, tag, now, Reason::Filtered);
        }
        let orig = Flow {
            proto: flow.proto,
            src: m.inside.addr,
            dst: flow.src,
            sport: m.inside.port,
            dport: flow.sport,
        };
        let sub = self.mappings.open_subscriber(orig.src);
        match self.create(orig, flow, mi, Kind::Snat, Some(sub), p, now) {
            Ok(h) => {
                self.translate_destination(ip, p, h);
                Pre::Session(h)
            }
            Err(r) => Pre::Refuse(r),
        }
    }

    /// Inbound to an external address with no mapping for the port.
    fn unmapped(&mut self, ip: &[u8], p: &Parsed, tag: u16, now: u64) -> Pre {
        if self.rules.pool.contains(&p.flow.dst) {
            return self.unsolicited(ip, p, tag, now, Reason::NoMapping);
        }
        // A masqueraded interface address: tern's own, the local stack answers (and a TCP
        // SYN is still held as RFC 5382 asks).
        match p.l4 {
            L4::Tcp { flags } if flags & (SYN | ACK) == SYN => self.hold_syn(ip, p, tag, now),
            _ => Pre::Pass,
        }
    }

    /// Refused inbound: a TCP SYN waits 6 s for an outbound SYN (RFC 5382 REQ-4), anything
    /// else is dropped.
    fn unsolicited(&mut self, ip: &[u8], p: &Parsed, tag: u16, now: u64, r: Reason) -> Pre {
        match p.l4 {
            L4::Tcp { flags } if flags & (SYN | ACK) == SYN => self.hold_syn(ip, p, tag, now),
            _ => Pre::Drop(r),
        }
    }

    fn hold_syn(&mut self, ip: &[u8], p: &Parsed, tag: u16, now: u64) -> Pre {
        if self.held_syns.len() >= MAX_HELD_SYNS || self.held_syns.iter().any(|h| h.flow == p.flow)
        {
            return Pre::Drop(Reason::SynNotHeld);
        }
        self.held_syns.push(HeldSyn {
            flow: p.flow,
            until: now + self.rules.timeouts.syn_hold,
            tag,
            packet: ip[..ip.len().min(HELD_SYN_BYTES)].to_vec(),
        });
        self.stats.syns_held += 1;
        Pre::Held
    }

    /// An inside host to a forward's external address ("NAT loopback"): both halves
    /// translated in one session, so the backend sees the sender's external address and
    /// port and answers through it. (An inside host to another's mapping goes round
    /// instead: `Pre::Recirculate`.)
    fn loopback(&mut self, ip: &mut [u8], p: &Parsed, to: Endpoint, now: u64) -> Pre {
        let flow = p.flow;
        let from = Endpoint {
            addr: flow.src,
            port: flow.sport,
        };
        let (mi, sub) = match self.open_mapping(flow.proto, from, flow.dst, now) {
            Ok(opened) => opened,
            Err(r) => return Pre::Refuse(r),
        };
        let Some(m) = self.mappings.get(mi).copied() else {
            return Pre::Refuse(Reason::PortsExhausted);
        };
        let reply = Flow {
            proto: flow.proto,
            src: to.addr,
            dst: m.external.addr,
            sport: to.port,
            dport: m.external.port,
        };
        match self.create(flow, reply, mi, Kind::Loopback, Some(sub), p, now) {
            Ok(h) => {
                self.translate_destination(ip, p, h);
                Pre::Session(h)
            }
            Err(r) => {
                self.drop_unused_mapping(mi, now);
                Pre::Refuse(r)
            }
        }
    }

    // ---- post-routing -----------------------------------------------------------------

    /// Post-routing for a packet that `prerouting` handled: `pre` is its session, if any;
    /// `snat` is the masquerade address when the packet goes from an inside interface out
    /// of an outside one (the pool, if configured, takes precedence).
    pub fn postrouting(
        &mut self,
        ip: &mut [u8],
        pre: Option<Handle>,
        snat: Option<u32>,
        now: u64,
    ) -> Post {
        self.postrouting_read(ip, pre, snat, now, None)
    }

    /// `postrouting` for a packet `prerouting_ahead` read as `ahead` and answered
    /// `Pre::Pass` (`pre` = `None`) or `Pre::Session(h)` (`pre` = `Some(h)`). A whole
    /// packet or first fragment is then not parsed again: a passed packet was not
    /// rewritten, and one with a session only had its destination set to the session's
    /// (`source_half`). Only the TTL changed since, which the reading does not hold.
    pub fn postrouting_ahead(
        &mut self,
        ip: &mut [u8],
        ahead: &Lookahead,
        pre: Option<Handle>,
        snat: Option<u32>,
        now: u64,
    ) -> Post {
        // `lookahead` hashed exactly the packets pre-routing reads whole (not a later
        // fragment, not an ICMP error, whose Pass may follow a rewrite).
        let read = ahead.hash.and(ahead.parsed.ok());
        self.postrouting_read(ip, pre, snat, now, read)
    }

    /// Both entry points inline this, so `postrouting` (the established path) keeps no
    /// trace of the reading it never has.
    #[inline(always)]
    fn postrouting_read(
        &mut self,
        ip: &mut [u8],
        pre: Option<Handle>,
        snat: Option<u32>,
        now: u64,
        read: Option<Parsed>,
    ) -> Post {
        if let Some(h) = pre {
            return self.source_half(ip, h, read);
        }
        // Nothing to translate and nothing to create: only a first fragment matters (its
        // later fragments learn they pass untranslated).
        let first_fragment = wire::ipv4::flags_frag(ip)
            & (wire::ipv4::FLAG_MF | wire::ipv4::OFFSET_MASK)
            == wire::ipv4::FLAG_MF;
        if snat.is_none() && !first_fragment {
            return Post::Pass;
        }
        let p = match read.map_or_else(|| flow::parse(ip), Ok) {
            Ok(p) => p,
            Err(_) => return Post::Drop(Reason::Truncated),
        };
        let first = p.fragment == Fragment::First;
        let Some(masquerade) = snat else {
            if first {
                self.frags.set_session(datagram_key(&p.flow, p.ident), None);
            }
            return Post::Pass;
        };
        if p.fragment == Fragment::Later || p.l4 == L4::IcmpError {
            return Post::Pass;
        }
        let verdict = match self.new_snat(&p, masquerade, now) {
            Ok(h) => {
                self.source_half(ip, h, Some(p));
                if first {
                    self.frags
                        .set_session(datagram_key(&p.flow, p.ident), Some(h));
                }
                return Post::Translated;
            }
            Err(r) => Post::Refuse(r),
        };
        if first {
            self.frags.set_session(datagram_key(&p.flow, p.ident), None);
        }
        verdict
    }

    fn new_snat(&mut self, p: &Parsed, masquerade: u32, now: u64) -> Result<Handle, Reason> {
        let flow = p.flow;
        // A replied echo request keeps its id in `sport`; the reply will carry it in `dport`.
        let inside = Endpoint {
            addr: flow.src,
            port: flow.sport,
        };
        let (mi, sub) = self.open_mapping(flow.proto, inside, masquerade, now)?;
        let Some(m) = self.mappings.get(mi).copied() else {
            return Err(Reason::PortsExhausted);
        };
        let reply = Flow {
            proto: flow.proto,
            src: flow.dst,
            dst: m.external.addr,
            sport: flow.dport,
            dport: m.external.port,
        };
        let created = self.create(flow, reply, mi, Kind::Snat, Some(sub), p, now);
        if created.is_err() {
            self.drop_unused_mapping(mi, now);
        } else if !self.held_syns.is_empty() {
            // An outbound SYN for a held inbound SYN: the held one is dropped silently.
            self.held_syns.retain(|h| h.flow != reply);
        }
        created
    }

    /// The endpoint-independent mapping of `inside` (made now if there is none, on the
    /// host's external address or `masquerade` without a pool) and the host's
    /// accounting slot, which the session to be created counts in.
    fn open_mapping(
        &mut self,
        proto: u8,
        inside: Endpoint,
        masquerade: u32,
        now: u64,
    ) -> Result<(u32, SubscriberId), Reason> {
        let sub = self.mappings.open_subscriber(inside.addr);
        let external = self.external_for(sub, masquerade);
        match self.mapping_for(proto, inside, external, sub, now) {
            Ok(mi) => Ok((mi, sub)),
            Err(r) => {
                self.mappings.release_subscriber(sub);
                Err(r)
            }
        }
    }

    /// The external address for a subscriber's new mapping: with a pool, the one its
    /// other mappings use (paired pooling, RFC 4787 REQ-2), else `pool_pick`; without a
    /// pool, the masquerade address.
    fn external_for(&self, sub: SubscriberId, masquerade: u32) -> u32 {
        if self.rules.pool.is_empty() {
            return masquerade;
        }
        match self.mappings.subscriber_at(sub) {
            s if s.ports > 0 => s.external,
            s => self.pool_pick(s.addr),
        }
    }

    /// The pool address for a host's first mapping: a seeded hash of its address. The
    /// pool must not be empty.
    fn pool_pick(&self, inside: u32) -> u32 {
        let pool = &self.rules.pool;
        let h = (inside as u64 ^ self.rules.seed).wrapping_mul(0x9e3779b97f4a7c15);
        pool[((h >> 32) % pool.len() as u64) as usize]
    }

    /// The endpoint-independent mapping of `inside`, made now if there is none.
    fn mapping_for(
        &mut self,
        proto: u8,
        inside: Endpoint,
        external: u32,
        sub: SubscriberId,
        now: u64,
    ) -> Result<u32, Reason> {
        if let Some(mi) = self.mappings.by_inside(proto, inside) {
            return Ok(mi);
        }
        let quota = self.rules.max_ports_per_host;
        if quota > 0 && self.mappings.subscriber_at(sub).ports >= quota {
            return Err(Reason::PortQuota);
        }
        let space = Space::of(proto);
        let port = self
            .take_port(external, proto, inside, now)
            .ok_or(Reason::PortsExhausted)?;
        let external = Endpoint {
            addr: external,
            port,
        };
        self.mappings
            .insert(proto, inside, external, sub)
            .ok_or_else(|| {
                self.ports.release(external.addr, space, port, now, 0);
                Reason::TableFull
            })
    }

    /// An external port on `addr` for the inside endpoint: its own port if free (port
    /// preservation), else one of the same class chosen at random, bounded probing. The
    /// first random choice is `first_probe`, the others come from the shard's generator.
    fn take_port(&mut self, addr: u32, proto: u8, inside: Endpoint, now: u64) -> Option<u16> {
        let shard = self.id;
        let space = Space::of(proto);
        if self.ports.try_take(addr, space, inside.port, shard, now) {
            return Some(inside.port);
        }
        let port = self.first_probe(proto, inside)?;
        if self.ports.try_take(addr, space, port, shard, now) {
            return Some(port);
        }
        let (lo, hi) = class_range(space, inside.port);
        let span = (hi - lo) as u64 + 1;
        for _ in 1..RANDOM_PROBES {
            let port = lo + (self.random() % span) as u16;
            if self.ports.try_take(addr, space, port, shard, now) {
                return Some(port);
            }
        }
        let start = self.random() % span;
        for i in 0..(LINEAR_PROBES as u64).min(span) {
            let port = lo + ((start + i) % span) as u16;
            if self.ports.try_take(addr, space, port, shard, now) {
                return Some(port);
            }
        }
        None
    }

    /// The first port tried when the endpoint's own is taken: a keyed hash of the endpoint
    /// into its port class (RFC 6056 §3.3.3's construction: unpredictable without the
    /// process's random seed). Unlike a draw from the generator it is known before the
    /// packet is translated, so a burst's prefetch pass loads its port-map word with the
    /// kept port's. `None` when the class has a single port (other protocols).
    fn first_probe(&self, proto: u8, inside: Endpoint) -> Option<u16> {
        let (lo, hi) = class_range(Space::of(proto), inside.port);
        let span = (hi - lo) as u64 + 1;
        if span == 1 {
            return None;
        }
        let h = crate::maglev::mix(self.rules.seed ^ 0x2127_599b_f432_5c37 ^ inside.key(proto));
        Some(lo + (h % span) as u16)
    }

    fn drop_unused_mapping(&mut self, mi: u32, now: u64) {
        if let Some(m) = self.mappings.remove_unused(mi) {
            self.release_port(&m, now);
        }
    }

    fn release_port(&self, m: &crate::mapping::Mapping, now: u64) {
        let hold = if m.answered {
            self.rules.timeouts.port_hold
        } else {
            0
        };
        self.ports.release(
            m.external.addr,
            Space::of(m.proto),
            m.external.port,
            now,
            hold,
        );
    }

    /// Inserts a session after the checks every new session passes: both keys free, the
    /// inside host's quota, room in the table (early drop, RFC 5508 REQ-8 otherwise).
    /// `subscriber` is the inside host the session counts against (every kind but DNAT,
    /// whose client is outside).
    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        orig: Flow,
        reply: Flow,
        mapping: u32,
        kind: Kind,
        subscriber: Option<SubscriberId>,
        p: &Parsed,
        now: u64,
    ) -> Result<Handle, Reason> {
        let hashes = self.sessions.key_hashes(&orig, &reply);
        if !self.sessions.keys_free(&orig, &reply, hashes) {
            return Err(Reason::PortsExhausted);
        }
        let quota = self.rules.max_sessions_per_host;
        if let Some(sub) = subscriber {
            if quota > 0 && self.mappings.subscriber_at(sub).sessions >= quota {
                return Err(Reason::SessionQuota);
            }
        }
        // Attach first: early drop must not free the mapping this session is about to use.
        if mapping != NONE {
            self.mappings.attach(mapping, reply.src);
        }
        if self.sessions.is_full() && !self.early_drop(now) {
            if mapping != NONE {
                if let Some(m) = self.mappings.detach(mapping, reply.src) {
                    self.release_port(&m, now);
                }
            }
            return Err(Reason::TableFull);
        }
        let from_orig = p.flow == orig;
        let mut tcp = Track::default();
        if let L4::Tcp { flags } = p.l4 {
            tcp.see(flags, from_orig);
        }
        let class = class_of(orig.proto, &tcp);
        let mut session = Session::template();
        session.orig = orig;
        session.reply = reply;
        // Decided once here, so that the established path tests one byte, not the address.
        session.kind = match kind {
            Kind::Snat if self.ports.is_external(orig.dst) => Kind::Hairpin,
            other => other,
        };
        session.class = class;
        session.tcp = tcp;
        session.replied = !from_orig;
        session.created = now;
        session.last = now;
        session.packets = 1;
        let h = self
            .sessions
            .insert(session, mapping, hashes)
            .ok_or(Reason::TableFull)?;
        if let Some(sub) = subscriber {
            self.mappings.add_session(sub);
        }
        if !from_orig && mapping != NONE {
            // Made by an inbound packet: a remote is sending to the mapping's port.
            self.mappings.mark_answered(mapping);
        }
        self.stats.created += 1;
        Ok(Handle {
            reply: !from_orig,
            ..h
        })
    }

    /// Makes room for a new session: the oldest transitory TCP session, else the oldest
    /// session never replied to. Established sessions are never taken.
    fn early_drop(&mut self, now: u64) -> bool {
        let victim = self.sessions.oldest(Class::TcpTransitory).or_else(|| {
            [Class::Udp, Class::Icmp, Class::Other]
                .iter()
                .find_map(|&c| {
                    let mut at = self.sessions.oldest(c);
                    for _ in 0..8 {
                        let i = at?;
                        if self.sessions.at(i).is_some_and(|s| !s.replied) {
                            return Some(i);
                        }
                        at = self.sessions.newer(i);
                    }
                    None
                })
        });
        match victim {
            Some(i) => {
                self.remove(i, now);
                self.stats.early_dropped += 1;
                true
            }
            None => false,
        }
    }

    /// Frees session `index` and whatever only it held (its mapping and external port).
    fn remove(&mut self, index: u32, now: u64) {
        let Some((s, mapping)) = self.sessions.remove(index) else {
            return;
        };
        if s.kind != Kind::Dnat {
            self.mappings.remove_session(s.orig.src);
        }
        if mapping != NONE {
            if let Some(m) = self.mappings.detach(mapping, s.reply.src) {
                self.release_port(&m, now);
            }
        }
    }

    // ---- housekeeping -----------------------------------------------------------------

    /// Reclaims expired sessions (at most `budget`), fragments past their time, and
    /// returns the held SYNs whose 6 s ran out: answer each with ICMP port unreachable.
    pub fn expire(&mut self, now: u64, budget: usize) -> Vec<(u16, Vec<u8>)> {
        let mut work = 0;
        for class in CLASSES {
            let timeout = self.timeout(class);
            while work < budget {
                let Some(i) = self.sessions.oldest(class) else {
                    break;
                };
                let Some(s) = self.sessions.at(i) else {
                    break;
                };
                if now.saturating_sub(s.last) < timeout {
                    if s.last > self.sessions.listed(i) {
                        // Used since it was queued (touch does not relink): queue it at
                        // its real place and look again.
                        self.sessions.requeue(i);
                        work += 1;
                        continue;
                    }
                    break;
                }
                self.remove(i, now);
                self.stats.expired += 1;
                work += 1;
            }
        }
        self.stats.fragments_timed_out += self.frags.expire(now, budget) as u64;
        let mut due = Vec::new();
        if self.held_syns.iter().any(|h| h.until <= now) {
            let mut i = 0;
            while i < self.held_syns.len() {
                if self.held_syns[i].until <= now {
                    let h = self.held_syns.swap_remove(i);
                    if self.taken_elsewhere(&h.flow) {
                        // Another shard mapped the port meanwhile: its outbound SYN is
                        // this one's connection (RFC 5382 REQ-4 drops the held SYN).
                        continue;
                    }
                    due.push((h.tag, h.packet));
                } else {
                    i += 1;
                }
            }
            self.stats.syns_answered += due.len() as u64;
        }
        due
    }

    /// Whether the external port a held SYN was sent to is now another shard's mapping.
    fn taken_elsewhere(&self, flow: &Flow) -> bool {
        self.ports
            .owner(flow.dst, Space::Tcp, flow.dport)
            .is_some_and(|o| o != self.id)
    }

    /// Later fragments whose first fragment arrived: `(tag, packet)` to run through the
    /// pipeline again.
    pub fn released_fragments(&mut self) -> Vec<(u16, Vec<u8>)> {
        if !self.frags.has_released() {
            return Vec::new();
        }
        self.frags
            .take_released()
            .into_iter()
            .map(|h| (h.tag, h.packet))
            .collect()
    }

    /// Deletes the sessions `keep` says no to (`tern ctl conntrack delete`). Returns how many.
    pub fn delete(&mut self, mut matches: impl FnMut(&Session) -> bool, now: u64) -> usize {
        let doomed: Vec<u32> = self
            .sessions
            .iter()
            .filter(|(_, s)| matches(s))
            .map(|(i, _)| i)
            .collect();
        for &i in &doomed {
            self.remove(i, now);
        }
        self.stats.deleted += doomed.len() as u64;
        doomed.len()
    }

    pub fn held_syns(&self) -> usize {
        self.held_syns.len()
    }
    pub fn held_fragments(&self) -> usize {
        self.frags.held()
    }

    /// Bytes this shard holds for its tables.
    pub fn bytes(&self) -> usize {
        self.sessions.bytes() + self.mappings.bytes()
    }

    /// The invariants: session keys and lists (table.rs), mapping indices, and every
    /// mapping's session count equal to the sessions naming it.
    pub fn check(&self) -> Result<(), String> {
        self.sessions.check()?;
        self.mappings.check()?;
        let mut counts = std::collections::HashMap::new();
        for (i, _) in self.sessions.iter() {
            let mapping = self.sessions.mapping(i);
            if mapping != NONE {
                *counts.entry(mapping).or_insert(0u32) += 1;
            }
        }
        for (&mi, &n) in &counts {
            match self.mappings.get(mi) {
                Some(m) if m.sessions == n => {}
                Some(m) => {
                    return Err(format!(
                        "mapping {mi}: {} sessions counted, {n} name it",
                        m.sessions
                    ))
                }
                None => return Err(format!("a session names freed mapping {mi}")),
            }
        }
        if counts.len() != self.mappings.len() {
            return Err(format!(
                "{} mappings, {} in use",
                self.mappings.len(),
                counts.len()
            ));
        }
        Ok(())
    }
}
