//! Endpoint-independent mappings (RFC 4787 REQ-1, RFC 5382 REQ-1): one external endpoint
//! per inside (protocol, address, port), whatever the destination, shared by all of that
//! endpoint's sessions and freed with the last one. Also what filtering needs (which
//! remote addresses a mapping has sent to) and the per-subscriber accounting (paired
//! pooling: one external address per inside host; session and port quotas, RFC 6888).

use std::collections::HashMap;

use crate::index::Index;
use crate::mem::huge_vec;
use crate::rules::Endpoint;
use crate::subscriber::{Subscriber, SubscriberId, Subscribers};

#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub proto: u8,
    pub inside: Endpoint,
    pub external: Endpoint,
    /// Live sessions using the mapping.
    pub sessions: u32,
    /// A remote has answered on it: the external port is known outside and is held down
    /// when freed. A port only the inside host sent from (a scan, a SYN flood) is reused
    /// at once, so a flood cannot park every port in hold-down.
    pub answered: bool,
    live: bool,
    /// The remote address most of a mapping's sessions go to (usually its only one), with
    /// its session count; other remotes are counted in `Mappings::more_remotes`.
    remote: u32,
    remote_sessions: u32,
}

impl Mapping {
    const UNUSED: Mapping = Mapping {
        proto: 0,
        inside: Endpoint { addr: 0, port: 0 },
        external: Endpoint { addr: 0, port: 0 },
        sessions: 0,
        answered: false,
        live: false,
        remote: 0,
        remote_sessions: 0,
    };
}

type Fast<K, V> = HashMap<K, V, ahash::RandomState>;

/// Mapping slots are found through two cache-line indices (the `Index` the session table
/// uses: a tag and the slot number per entry, the key compared in the slot), so a lookup
/// or insert costs one index line and one slot line instead of a hash map's separate
/// control and entry lines; a new session pays this twice (inside and external keys).
pub struct Mappings {
    /// All the table's slots, preallocated (and written, so their pages exist) when the
    /// shard is made: the packet path never grows or copies them.
    slots: Vec<Mapping>,
    /// Slots ever used: those at and past it have never held a mapping.
    used: u32,
    free: Vec<u32>,
    by_inside: Index,
    by_external: Index,
    /// (mapping, remote address) → sessions, for the remotes after a mapping's first:
    /// address-dependent filtering.
    more_remotes: Fast<u64, u32>,
    subscribers: Subscribers,
}

#[inline(always)]
fn remote_key(i: u32, remote: u32) -> u64 {
    (i as u64) << 32 | remote as u64
}

impl Mappings {
    /// Room for the mappings of `capacity` sessions: a mapping has at least one session,
    /// except the one a new session makes before it is inserted (when the session table
    /// is full, early drop frees another only then). Slots and indices are allocated now.
    pub fn new(capacity: usize) -> Mappings {
        let rs = ahash::RandomState::new;
        let capacity = capacity + 1;
        Mappings {
            slots: huge_vec(capacity, Mapping::UNUSED),
            used: 0,
            free: Vec::new(),
            by_inside: Index::with_capacity(capacity),
            by_external: Index::with_capacity(capacity),
            more_remotes: HashMap::with_hasher(rs()),
            subscribers: Subscribers::with_capacity(capacity.min(1 << 12)),
        }
    }

    pub fn len(&self) -> usize {
        self.by_inside.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_inside.len() == 0
    }

    pub fn get(&self, i: u32) -> Option<&Mapping> {
        self.slots.get(i as usize).filter(|m| m.live)
    }

    pub fn by_inside(&self, proto: u8, inside: Endpoint) -> Option<u32> {
        let hash = self.by_inside.hash(inside.key(proto) as u128);
        self.by_inside.find(hash, |i| {
            self.get(i)
                .is_some_and(|m| m.proto == proto && m.inside == inside)
        })
    }

    pub fn by_external(&self, proto: u8, external: Endpoint) -> Option<u32> {
        let hash = self.by_external.hash(external.key(proto) as u128);
        self.by_external.find(hash, |i| {
            self.get(i)
                .is_some_and(|m| m.proto == proto && m.external == external)
        })
    }

    /// Starts loading the index line a new mapping of `inside` is looked up in.
    #[inline]
    pub fn prefetch_inside(&self, proto: u8, inside: Endpoint) {
        self.by_inside
            .prefetch(self.by_inside.hash(inside.key(proto) as u128));
    }

    /// Starts loading the index line a new mapping to `external` is inserted in.
    #[inline]
    pub fn prefetch_external(&self, proto: u8, external: Endpoint) {
        self.by_external
            .prefetch(self.by_external.hash(external.key(proto) as u128));
    }

    pub fn subscriber(&self, inside: u32) -> Option<&Subscriber> {
        self.subscribers
            .find(inside)
            .map(|id| self.subscribers.get(id))
    }

    /// The inside host's accounting slot, made if it has none (one hash; the new-session
    /// path then works by index). Give an unused one back with `release_subscriber`.
    pub fn open_subscriber(&mut self, inside: u32) -> SubscriberId {
        self.subscribers.open(inside)
    }

    pub fn subscriber_at(&self, id: SubscriberId) -> &Subscriber {
        self.subscribers.get(id)
    }

    /// Frees the slot if a new session failed before the host had anything in it.
    pub fn release_subscriber(&mut self, id: SubscriberId) {
        self.subscribers.release_if_idle(id);
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// Records a new mapping of subscriber `sub` (the caller took the external port and
    /// made sure neither key is mapped). `None` when the table already holds its capacity.
    pub fn insert(
        &mut self,
        proto: u8,
        inside: Endpoint,
        external: Endpoint,
        sub: SubscriberId,
    ) -> Option<u32> {
        let m = Mapping {
            proto,
            inside,
            external,
            sessions: 0,
            answered: false,
            live: true,
            remote: 0,
            remote_sessions: 0,
        };
        let i = match self.free.last() {
            Some(&i) => i,
            None if (self.used as usize) < self.slots.len() => self.used,
            None => return None,
        };
        if !self
            .by_inside
            .insert(self.by_inside.hash(inside.key(proto) as u128), i)
        {
            return None;
        }
        if !self
            .by_external
            .insert(self.by_external.hash(external.key(proto) as u128), i)
        {
            self.by_inside
                .remove(self.by_inside.hash(inside.key(proto) as u128), i);
            return None;
        }
        if self.free.pop().is_none() {
            self.used += 1;
        }
        self.slots[i as usize] = m;
        let sub = self.subscribers.get_mut(sub);
        sub.external = external.addr;
        sub.ports += 1;
        Some(i)
    }

    /// A session starts using mapping `i` towards `remote`.
    pub fn attach(&mut self, i: u32, remote: u32) {
        let Some(m) = self.slots.get_mut(i as usize).filter(|m| m.live) else {
            return;
        };
        m.sessions += 1;
        if m.remote_sessions == 0 || m.remote == remote {
            m.remote = remote;
            m.remote_sessions += 1;
        } else {
            *self.more_remotes.entry(remote_key(i, remote)).or_default() += 1;
        }
    }

    /// A session towards `remote` stopped using mapping `i`. Returns the mapping if that
    /// was its last session (it is removed: the caller releases the external port).
    pub fn detach(&mut self, i: u32, remote: u32) -> Option<Mapping> {
        let m = self.slots.get_mut(i as usize).filter(|m| m.live)?;
        m.sessions = m.sessions.saturating_sub(1);
        if m.remote_sessions > 0 && m.remote == remote {
            m.remote_sessions -= 1;
        } else if let Some(n) = self.more_remotes.get_mut(&remote_key(i, remote)) {
            *n -= 1;
            if *n == 0 {
                self.more_remotes.remove(&remote_key(i, remote));
            }
        }
        if m.sessions > 0 {
            return None;
        }
        m.live = false;
        let m = *m;
        self.by_inside
            .remove(self.by_inside.hash(m.inside.key(m.proto) as u128), i);
        self.by_external
            .remove(self.by_external.hash(m.external.key(m.proto) as u128), i);
        self.free.push(i);
        if let Some(id) = self.subscribers.find(m.inside.addr) {
            let sub = self.subscribers.get_mut(id);
            sub.ports = sub.ports.saturating_sub(1);
            self.subscribers.release_if_idle(id);
        }
        Some(m)
    }

    /// Frees mapping `i` if no session took it (a session create that failed after the
    /// mapping was made). Returns it: the caller releases the external port.
    pub fn remove_unused(&mut self, i: u32) -> Option<Mapping> {
        if self.get(i)?.sessions > 0 {
            return None;
        }
        self.attach(i, 0);
        self.detach(i, 0)
    }

    /// A remote answered on mapping `i` (see [`Mapping::answered`]).
    pub fn mark_answered(&mut self, i: u32) {
        if let Some(m) = self.slots.get_mut(i as usize) {
            m.answered = true;
        }
    }

    /// Whether mapping `i` has a session towards `remote` (address-dependent filtering).
    pub fn has_sent_to(&self, i: u32, remote: u32) -> bool {
        self.get(i)
            .is_some_and(|m| m.remote_sessions > 0 && m.remote == remote)
            || self.more_remotes.contains_key(&remote_key(i, remote))
    }

    pub fn add_session(&mut self, sub: SubscriberId) {
        self.subscribers.get_mut(sub).sessions += 1;
    }

    pub fn remove_session(&mut self, inside: u32) {
        if let Some(id) = self.subscribers.find(inside) {
            let sub = self.subscribers.get_mut(id);
            sub.sessions = sub.sessions.saturating_sub(1);
            self.subscribers.release_if_idle(id);
        }
    }

    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Mapping>()
            + self.by_inside.bytes()
            + self.by_external.bytes()
            + self.more_remotes.capacity() * 13 * 8 / 7
            + self.subscribers.bytes()
    }

    pub fn check(&self) -> Result<(), String> {
        let mut more: HashMap<u32, u32> = HashMap::new();
        for (k, n) in &self.more_remotes {
            *more.entry((k >> 32) as u32).or_default() += n;
        }
        for (i, m) in self.slots.iter().enumerate().filter(|(_, m)| m.live) {
            if self.by_inside(m.proto, m.inside) != Some(i as u32)
                || self.by_external(m.proto, m.external) != Some(i as u32)
            {
                return Err(format!("mapping {i}: index does not point at it"));
            }
            if m.sessions == 0 {
                return Err(format!("mapping {i}: live without sessions"));
            }
            let elsewhere = more.get(&(i as u32)).copied().unwrap_or(0);
            if m.remote_sessions + elsewhere != m.sessions {
                return Err(format!(
                    "mapping {i}: {} sessions, {} counted by remote",
                    m.sessions,
                    m.remote_sessions + elsewhere
                ));
            }
        }
        let live = self.slots.iter().filter(|m| m.live).count();
        if self.by_inside.len() != live || self.by_external.len() != live {
            return Err(format!(
                "{live} live mappings, {} inside and {} external index entries",
                self.by_inside.len(),
                self.by_external.len()
            ));
        }
        self.subscribers.check()?;
        let mut ports: HashMap<u32, u32> = HashMap::new();
        for m in self.slots.iter().filter(|m| m.live) {
            *ports.entry(m.inside.addr).or_default() += 1;
        }
        for (addr, n) in ports {
            let counted = self.subscriber(addr).map_or(0, |s| s.ports);
            if counted != n {
                return Err(format!(
                    "subscriber {addr:#x}: {n} mappings, {counted} ports counted"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(addr: u32, port: u16) -> Endpoint {
        Endpoint { addr, port }
    }

    /// A mapping's first remote is counted in its slot, later ones beside it; whichever
    /// goes first, `has_sent_to` answers for exactly the remotes with sessions, and the
    /// mapping goes with its last session.
    #[test]
    fn remotes_are_counted_whichever_order_sessions_end() {
        let mut m = Mappings::new(8);
        let sub = m.open_subscriber(10);
        let i = m.insert(17, ep(10, 4000), ep(99, 4000), sub).expect("room");
        assert_eq!(m.by_inside(17, ep(10, 4000)), Some(i));
        assert_eq!(m.by_external(17, ep(99, 4000)), Some(i));
        assert_eq!(m.by_inside(6, ep(10, 4000)), None, "another protocol");
        m.attach(i, 1);
        m.attach(i, 2);
        m.attach(i, 2);
        m.attach(i, 3);
        m.check().expect("consistent");
        assert!([1, 2, 3].iter().all(|&r| m.has_sent_to(i, r)));
        assert!(!m.has_sent_to(i, 4));
        // The slot's remote ends first; the next new remote takes the slot while 2 and 3
        // stay counted beside it.
        assert!(m.detach(i, 1).is_none());
        assert!(!m.has_sent_to(i, 1));
        m.attach(i, 3);
        m.check().expect("consistent");
        assert!(m.detach(i, 2).is_none());
        assert!(m.has_sent_to(i, 2), "one session to 2 is left");
        assert!(m.detach(i, 2).is_none());
        assert!(!m.has_sent_to(i, 2));
        assert!(m.detach(i, 3).is_none());
        assert!(m.has_sent_to(i, 3));
        let gone = m.detach(i, 3).expect("the last session frees the mapping");
        assert_eq!(gone.external, ep(99, 4000));
        assert_eq!(m.by_inside(17, ep(10, 4000)), None);
        assert_eq!(m.by_external(17, ep(99, 4000)), None);
        assert!(m.is_empty() && m.more_remotes.is_empty());
        assert!(m.subscriber(10).is_none(), "the host's record went with it");
        m.check().expect("consistent");
    }

    #[test]
    fn the_capacity_bounds_the_mappings() {
        let mut m = Mappings::new(2);
        let sub = m.open_subscriber(10);
        for p in 0..3 {
            assert!(
                m.insert(17, ep(10, p), ep(99, p), sub).is_some(),
                "mapping {p}"
            );
        }
        assert!(m.insert(17, ep(10, 3), ep(99, 3), sub).is_none());
        assert_eq!(m.subscriber(10).map(|s| s.ports), Some(3));
        assert_eq!(m.len(), 3);
    }
}
