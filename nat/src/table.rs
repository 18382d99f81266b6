//! The session table of one shard: a preallocated slab, an index holding both directions
//! of every session (original and reply 5-tuples, index.rs), and one list per timeout
//! class threaded through the slab. Every session in a class has the same idle timeout,
//! so each list is in order of expiry once sessions used since they were queued are moved
//! back: expiry pops heads, requeueing those, with bounded work, and needs no per-flow
//! timer.
//!
//! What a packet touches is one 64-byte line per session (`Session`: keys, clock,
//! counters, state); what only creation, expiry and removal touch (`Link`: list links,
//! queue time, mapping) lives in a parallel array, so a packet never reads it.

use crate::flow::Flow;
use crate::index::Index;
use crate::mem::{huge_vec, prefetch};
use crate::tcp::Track;

pub const NONE: u32 = u32::MAX;

/// Timeout classes, each with its own LRU list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    TcpEstablished = 0,
    TcpTransitory = 1,
    Udp = 2,
    Icmp = 3,
    Other = 4,
}

pub const CLASSES: [Class; 5] = [
    Class::TcpEstablished,
    Class::TcpTransitory,
    Class::Udp,
    Class::Icmp,
    Class::Other,
];

impl Class {
    pub fn name(&self) -> &'static str {
        match self {
            Class::TcpEstablished => "tcp-established",
            Class::TcpTransitory => "tcp-transitory",
            Class::Udp => "udp",
            Class::Icmp => "icmp",
            Class::Other => "other",
        }
    }
}

/// How a session came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An inside host's flow to the outside, source translated.
    Snat,
    /// An outside client's flow to a frontend, destination translated.
    Dnat,
    /// An SNAT session whose remote is one of our own external endpoints: one inside
    /// host reaching another's mapping. A packet of its original direction gets its
    /// source half in pre-routing and goes round again, as if from the outside, to the
    /// shard that holds the mapping it is sent to (shard.rs, `goes_round`).
    Hairpin,
    /// An inside host's flow to a forward's external address ("NAT loopback"): both
    /// halves translated in this one session.
    Loopback,
}

/// One session: the line a packet reads and writes.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub struct Session {
    /// The original direction's 5-tuple as it arrives, before translation.
    pub orig: Flow,
    /// The reply direction's 5-tuple as it arrives, before translation. A packet of the
    /// original direction leaves as `reply.reversed()`, a reply leaves as `orig.reversed()`.
    pub reply: Flow,
    pub last: u64,
    pub packets: u64,
    pub created: u64,
    /// Bumped when the slot is taken and when it is freed: odd while the session lives, so
    /// a stale handle is recognised.
    pub generation: u32,
    pub kind: Kind,
    pub class: Class,
    pub tcp: Track,
    /// A packet of the reply direction has been seen.
    pub replied: bool,
}

impl Session {
    pub fn live(&self) -> bool {
        self.generation & 1 == 1
    }

    /// A blank session, for `..Session::template()` in constructors.
    pub fn template() -> Session {
        Session {
            orig: Flow::default(),
            reply: Flow::default(),
            last: 0,
            packets: 0,
            created: 0,
            generation: 0,
            kind: Kind::Snat,
            class: Class::Other,
            tcp: Track::default(),
            replied: false,
        }
    }
}

/// What only creation, expiry and removal need of a session.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// The SNAT mapping the session uses, or `NONE`.
    mapping: u32,
    prev: u32,
    next: u32,
    /// When the session was last queued at its list's tail.
    listed: u64,
}

const UNLINKED: Link = Link {
    mapping: NONE,
    prev: NONE,
    next: NONE,
    listed: 0,
};

/// A reference to a session that survives between pipeline stages: index and generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    pub index: u32,
    pub generation: u32,
    /// The packet belongs to the reply direction.
    pub reply: bool,
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: usize,
}

pub struct Sessions {
    slots: Vec<Session>,
    links: Vec<Link>,
    free: Vec<u32>,
    lists: [List; 5],
    /// Flow key → index × 2 + (1 if the key is the reply direction).
    index: Index,
}

/// The index hashes of a session's two keys (`Sessions::key_hashes`).
#[derive(Debug, Clone, Copy)]
pub struct KeyHashes {
    orig: u64,
    reply: u64,
}

impl Sessions {
    /// A table for `capacity` sessions, allocated now.
    pub fn new(capacity: usize) -> Sessions {
        let capacity = capacity.clamp(1, NONE as usize / 2 - 1);
        Sessions {
            slots: huge_vec(capacity, Session::template()),
            links: vec![UNLINKED; capacity],
            free: (0..capacity as u32).rev().collect(),
            lists: [List {
                head: NONE,
                tail: NONE,
                len: 0,
            }; 5],
            index: Index::with_capacity(capacity * 2),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }
    pub fn count(&self, class: Class) -> usize {
        self.lists[class as usize].len
    }

    /// The index hash of a flow: what `prefetch` and `find_hashed` take.
    #[inline(always)]
    pub fn hash(&self, flow: &Flow) -> u64 {
        self.index.hash(flow.key())
    }

    /// First step of a burst lookup: start loading the index bucket of `hash`.
    #[inline(always)]
    pub fn prefetch_bucket(&self, hash: u64) {
        self.index.prefetch(hash);
    }

    /// Second step, once the bucket is (nearly) in cache: start loading the session it
    /// most likely names.
    /// Returns whether the bucket names a candidate (false: most likely a new flow).
    #[inline(always)]
    pub fn prefetch_session(&self, hash: u64) -> bool {
        let Some(v) = self.index.first_candidate(hash) else {
            return false;
        };
        if let Some(s) = self.slots.get((v >> 1) as usize) {
            prefetch(s);
        }
        true
    }

    /// The session a packet with this flow belongs to.
    #[inline]
    pub fn find(&self, flow: &Flow) -> Option<Handle> {
        self.find_hashed(flow, self.hash(flow))
    }

    /// `find` with the hash already computed (`hash`).
    #[inline]
    pub fn find_hashed(&self, flow: &Flow, hash: u64) -> Option<Handle> {
        let v = self.index.find(hash, |v| {
            self.slots.get((v >> 1) as usize).is_some_and(|s| {
                let key = if v & 1 == 1 { &s.reply } else { &s.orig };
                key == flow
            })
        })?;
        let index = v >> 1;
        Some(Handle {
            index,
            generation: self.slots[index as usize].generation,
            reply: v & 1 == 1,
        })
    }

    /// The session behind `h`, unless it was freed since.
    #[inline]
    pub fn get(&self, h: Handle) -> Option<&Session> {
        let s = self.slots.get(h.index as usize)?;
        (s.live() && s.generation == h.generation).then_some(s)
    }

    #[inline]
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut Session> {
        let s = self.slots.get_mut(h.index as usize)?;
        (s.live() && s.generation == h.generation).then_some(s)
    }

    pub fn at(&self, index: u32) -> Option<&Session> {
        self.slots.get(index as usize).filter(|s| s.live())
    }

    /// The SNAT mapping session `index` uses, or `NONE`.
    pub fn mapping(&self, index: u32) -> u32 {
        self.links.get(index as usize).map_or(NONE, |l| l.mapping)
    }

    /// When session `index` was last queued in its class list.
    pub fn listed(&self, index: u32) -> u64 {
        self.links.get(index as usize).map_or(0, |l| l.listed)
    }

    /// The index hashes of a new session's two keys, for `keys_free` and `insert`.
    #[inline]
    pub fn key_hashes(&self, orig: &Flow, reply: &Flow) -> KeyHashes {
        KeyHashes {
            orig: self.hash(orig),
            reply: self.hash(reply),
        }
    }

    /// Whether both keys of a session are free.
    pub fn keys_free(&self, orig: &Flow, reply: &Flow, h: KeyHashes) -> bool {
        self.find_hashed(orig, h.orig).is_none() && self.find_hashed(reply, h.reply).is_none()
    }

    /// Inserts a session using SNAT mapping `mapping` (or `NONE`) under its keys' hashes
    /// `h`; the caller made room and checked the keys. Returns its handle.
    pub fn insert(&mut self, mut s: Session, mapping: u32, h: KeyHashes) -> Option<Handle> {
        let index = self.free.pop()?;
        let slot = &mut self.slots[index as usize];
        s.generation = slot.generation.wrapping_add(1);
        *slot = s;
        self.links[index as usize] = Link {
            mapping,
            listed: s.last,
            ..UNLINKED
        };
        self.index.insert(h.orig, index << 1);
        self.index.insert(h.reply, index << 1 | 1);
        self.push_tail(index, s.class);
        Some(Handle {
            index,
            generation: s.generation,
            reply: false,
        })
    }

    /// Frees a session; returns it as it was, with its mapping.
    pub fn remove(&mut self, index: u32) -> Option<(Session, u32)> {
        let s = *self.slots.get(index as usize).filter(|s| s.live())?;
        self.unlink(index, s.class);
        let (orig, reply) = (self.hash(&s.orig), self.hash(&s.reply));
        self.index.remove(orig, index << 1);
        self.index.remove(reply, index << 1 | 1);
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        Some((s, self.links[index as usize].mapping))
    }

    /// Marks use at `now`, in class `class`. Only a class change moves the session to
    /// another list; otherwise its place is corrected lazily, when it reaches its list's
    /// head (`expire` requeues a head used since it was queued), so a packet writes this
    /// session's line and nothing else.
    #[inline(always)]
    pub fn touch(&mut self, index: u32, class: Class, now: u64) {
        let s = &mut self.slots[index as usize];
        s.last = now;
        if s.class != class {
            self.change_class(index, class, now);
        }
    }

    /// `touch`'s rare part, out of line so that a packet's path stays small: the session
    /// moves to the tail of its new class's list.
    #[inline(never)]
    fn change_class(&mut self, index: u32, class: Class, now: u64) {
        let old = std::mem::replace(&mut self.slots[index as usize].class, class);
        self.unlink(index, old);
        self.links[index as usize].listed = now;
        self.push_tail(index, class);
    }

    /// Moves a session to its list's tail at its last use (for `expire`).
    pub fn requeue(&mut self, index: u32) {
        let s = self.slots[index as usize];
        self.unlink(index, s.class);
        self.links[index as usize].listed = s.last;
        self.push_tail(index, s.class);
    }

    /// The least recently queued session of a class.
    pub fn oldest(&self, class: Class) -> Option<u32> {
        let h = self.lists[class as usize].head;
        (h != NONE).then_some(h)
    }

    /// The session after `index` in its class list (towards more recently queued).
    pub fn newer(&self, index: u32) -> Option<u32> {
        let n = self.links[index as usize].next;
        (n != NONE).then_some(n)
    }

    /// Live sessions, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Session)> {
        self.slots(0..self.slots.len())
    }

    /// Live sessions in a range of slots, in slot order (a listing's page).
    pub fn slots(&self, range: std::ops::Range<usize>) -> impl Iterator<Item = (u32, &Session)> {
        let start = range.start;
        self.slots
            .get(range)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live())
            .map(move |(i, s)| ((start + i) as u32, s))
    }

    /// Bytes held: slab, links, free list and the index.
    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Session>()
            + self.links.capacity() * std::mem::size_of::<Link>()
            + self.free.capacity() * 4
            + self.index.bytes()
    }

    fn push_tail(&mut self, index: u32, class: Class) {
        let list = &mut self.lists[class as usize];
        let tail = list.tail;
        list.tail = index;
        if tail == NONE {
            list.head = index;
        }
        list.len += 1;
        if tail != NONE {
            self.links[tail as usize].next = index;
        }
        let l = &mut self.links[index as usize];
        l.prev = tail;
        l.next = NONE;
    }

    fn unlink(&mut self, index: u32, class: Class) {
        let Link { prev, next, .. } = self.links[index as usize];
        let list = &mut self.lists[class as usize];
        if prev == NONE {
            list.head = next;
        }
        if next == NONE {
            list.tail = prev;
        }
        list.len -= 1;
        if prev != NONE {
            self.links[prev as usize].next = next;
        }
        if next != NONE {
            self.links[next as usize].prev = prev;
        }
    }

    /// Checks the invariants: both keys of each live session point at it, the index holds
    /// nothing else, the lists hold every live session once in its class. For tests and
    /// the fuzz target; O(n).
    pub fn check(&self) -> Result<(), String> {
        let mut live = 0;
        for (i, s) in self.iter() {
            live += 1;
            if self.find(&s.orig).map(|h| (h.index, h.reply)) != Some((i, false)) {
                return Err(format!("session {i}: original key does not point at it"));
            }
            if self.find(&s.reply).map(|h| (h.index, h.reply)) != Some((i, true)) {
                return Err(format!("session {i}: reply key does not point at it"));
            }
        }
        if let Some(v) = self.index.values().find(|v| self.at(v >> 1).is_none()) {
            return Err(format!("index entry {v} names a free slot"));
        }
        if self.index.len() != live * 2 {
            return Err(format!("{} keys for {live} sessions", self.index.len()));
        }
        let mut listed = 0;
        for c in CLASSES {
            let mut n = 0;
            let mut at = self.lists[c as usize].head;
            let mut prev = NONE;
            while at != NONE {
                let s = &self.slots[at as usize];
                let l = &self.links[at as usize];
                if !s.live() || s.class != c || l.prev != prev {
                    return Err(format!("list {}: bad link at {at}", c.name()));
                }
                n += 1;
                if n > self.slots.len() {
                    return Err(format!("list {}: cycle", c.name()));
                }
                prev = at;
                at = l.next;
            }
            if n != self.lists[c as usize].len || self.lists[c as usize].tail != prev {
                return Err(format!("list {}: length or tail wrong", c.name()));
            }
            listed += n;
        }
        if listed != live || live != self.len() {
            return Err(format!(
                "{listed} listed, {live} live, {} counted",
                self.len()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Session>(), 64);
        assert_eq!(std::mem::align_of::<Session>(), 64);
    }
}
