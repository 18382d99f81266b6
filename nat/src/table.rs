//! The session table of one shard: a preallocated slab, a hash index holding both
//! directions of every session (original and reply 5-tuples), and one LRU list per
//! timeout class threaded through the slab. Every session in a class has the same idle
//! timeout, so each list's head is the next to expire: expiry pops heads, with bounded
//! work, and needs no per-flow timer.

use std::collections::HashMap;

use crate::flow::Flow;
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
    /// An inside host's flow to another inside host's external mapping: both translated.
    Hairpin,
}

#[derive(Debug, Clone, Copy)]
pub struct Session {
    /// The original direction's 5-tuple as it arrives, before translation.
    pub orig: Flow,
    /// The reply direction's 5-tuple as it arrives, before translation. A packet of the
    /// original direction leaves as `reply.reversed()`, a reply leaves as `orig.reversed()`.
    pub reply: Flow,
    /// The SNAT mapping this session uses, or `NONE`.
    pub mapping: u32,
    pub kind: Kind,
    pub class: Class,
    pub tcp: Track,
    /// A packet of the reply direction has been seen.
    pub replied: bool,
    pub created: u64,
    pub last: u64,
    pub packets: u64,
    /// Bumped when the slot is freed, so a stale handle is recognised.
    pub generation: u32,
    /// When the session was last queued at its list's tail.
    listed: u64,
    prev: u32,
    next: u32,
    live: bool,
}

impl Session {
    pub fn listed(&self) -> u64 {
        self.listed
    }

    /// A blank session, for `..Session::template()` in constructors.
    pub fn template() -> Session {
        Session {
            orig: Flow::default(),
            reply: Flow::default(),
            mapping: NONE,
            kind: Kind::Snat,
            class: Class::Other,
            tcp: Track::default(),
            replied: false,
            created: 0,
            last: 0,
            packets: 0,
            generation: 0,
            listed: 0,
            prev: NONE,
            next: NONE,
            live: false,
        }
    }
}

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
    free: Vec<u32>,
    lists: [List; 5],
    /// Flow key → index × 2 + (1 if the key is the reply direction).
    index: HashMap<u128, u32, ahash::RandomState>,
}

impl Sessions {
    /// A table for `capacity` sessions, allocated now. The index hash has a random seed
    /// per process (ahash's runtime RNG), so nobody can aim flows at one bucket.
    pub fn new(capacity: usize) -> Sessions {
        let capacity = capacity.clamp(1, NONE as usize / 2);
        Sessions {
            slots: vec![Session::template(); capacity],
            free: (0..capacity as u32).rev().collect(),
            lists: [List {
                head: NONE,
                tail: NONE,
                len: 0,
            }; 5],
            index: HashMap::with_capacity_and_hasher(capacity * 2, ahash::RandomState::new()),
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

    /// The session a packet with this flow belongs to.
    #[inline]
    pub fn find(&self, flow: &Flow) -> Option<Handle> {
        let v = *self.index.get(&flow.key())?;
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
        (s.live && s.generation == h.generation).then_some(s)
    }

    #[inline]
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut Session> {
        let s = self.slots.get_mut(h.index as usize)?;
        (s.live && s.generation == h.generation).then_some(s)
    }

    pub fn at(&self, index: u32) -> Option<&Session> {
        self.slots.get(index as usize).filter(|s| s.live)
    }

    /// Whether both keys of a session are free.
    pub fn keys_free(&self, orig: &Flow, reply: &Flow) -> bool {
        !self.index.contains_key(&orig.key()) && !self.index.contains_key(&reply.key())
    }

    /// Inserts a session (the caller made room and checked the keys). Returns its handle.
    pub fn insert(&mut self, mut s: Session) -> Option<Handle> {
        let index = self.free.pop()?;
        let slot = &mut self.slots[index as usize];
        s.generation = slot.generation;
        s.live = true;
        s.prev = NONE;
        s.next = NONE;
        s.listed = s.last;
        *slot = s;
        self.index.insert(s.orig.key(), index << 1);
        self.index.insert(s.reply.key(), index << 1 | 1);
        self.push_tail(index, s.class);
        Some(Handle {
            index,
            generation: s.generation,
            reply: false,
        })
    }

    /// Frees a session; returns it as it was.
    pub fn remove(&mut self, index: u32) -> Option<Session> {
        let s = *self.slots.get(index as usize).filter(|s| s.live)?;
        self.unlink(index, s.class);
        self.index.remove(&s.orig.key());
        self.index.remove(&s.reply.key());
        let slot = &mut self.slots[index as usize];
        slot.live = false;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
        Some(s)
    }

    /// Marks use at `now`. The session moves to the tail of its class (which may change)
    /// at most once a second: the list order is exact to a second, and a busy flow does
    /// not rewrite four links per packet. `expire` requeues a head used since.
    #[inline]
    pub fn touch(&mut self, index: u32, class: Class, now: u64) {
        let s = &mut self.slots[index as usize];
        s.last = now;
        if s.class == class && now.saturating_sub(s.listed) < 1000 {
            return;
        }
        let old = s.class;
        self.unlink(index, old);
        let s = &mut self.slots[index as usize];
        s.class = class;
        s.listed = now;
        self.push_tail(index, class);
    }

    /// Moves a session to its list's tail at its last use (for `expire`).
    pub fn requeue(&mut self, index: u32) {
        let class = self.slots[index as usize].class;
        self.unlink(index, class);
        let s = &mut self.slots[index as usize];
        s.listed = s.last;
        self.push_tail(index, class);
    }

    /// The least recently used session of a class.
    pub fn oldest(&self, class: Class) -> Option<u32> {
        let h = self.lists[class as usize].head;
        (h != NONE).then_some(h)
    }

    /// The session after `index` in its class list (towards more recently used).
    pub fn newer(&self, index: u32) -> Option<u32> {
        let n = self.slots[index as usize].next;
        (n != NONE).then_some(n)
    }

    /// Live sessions, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Session)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.live)
            .map(|(i, s)| (i as u32, s))
    }

    /// Bytes held: slab, free list and the index (hashbrown: key, value and a control
    /// byte per bucket).
    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Session>()
            + self.free.capacity() * 4
            + self.index.capacity() * (16 + 4 + 1) * 8 / 7
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
            self.slots[tail as usize].next = index;
        }
        let s = &mut self.slots[index as usize];
        s.prev = tail;
        s.next = NONE;
    }

    fn unlink(&mut self, index: u32, class: Class) {
        let (prev, next) = {
            let s = &self.slots[index as usize];
            (s.prev, s.next)
        };
        let list = &mut self.lists[class as usize];
        if prev == NONE {
            list.head = next;
        }
        if next == NONE {
            list.tail = prev;
        }
        list.len -= 1;
        if prev != NONE {
            self.slots[prev as usize].next = next;
        }
        if next != NONE {
            self.slots[next as usize].prev = prev;
        }
    }

    /// Checks the invariants: both keys of each live session point at it, the index holds
    /// nothing else, the lists hold every live session once in its class. For tests and
    /// the fuzz target; O(n).
    pub fn check(&self) -> Result<(), String> {
        let mut live = 0;
        for (i, s) in self.iter() {
            live += 1;
            if self.index.get(&s.orig.key()) != Some(&(i << 1)) {
                return Err(format!("session {i}: original key does not point at it"));
            }
            if self.index.get(&s.reply.key()) != Some(&(i << 1 | 1)) {
                return Err(format!("session {i}: reply key does not point at it"));
            }
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
                if !s.live || s.class != c || s.prev != prev {
                    return Err(format!("list {}: bad link at {at}", c.name()));
                }
                n += 1;
                if n > self.slots.len() {
                    return Err(format!("list {}: cycle", c.name()));
                }
                prev = at;
                at = s.next;
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
