//! Endpoint-independent mappings (RFC 4787 REQ-1, RFC 5382 REQ-1): one external endpoint
//! per inside (protocol, address, port), whatever the destination, shared by all of that
//! endpoint's sessions and freed with the last one. Also what filtering needs (which
//! remote addresses a mapping has sent to) and the per-subscriber accounting (paired
//! pooling: one external address per inside host; session and port quotas, RFC 6888).

use std::collections::HashMap;

use crate::rules::Endpoint;

#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    pub proto: u8,
    pub inside: Endpoint,
    pub external: Endpoint,
    /// Live sessions using the mapping.
    pub sessions: u32,
    live: bool,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Subscriber {
    /// The external address all of this host's mappings use (paired pooling).
    pub external: u32,
    pub sessions: u32,
    pub ports: u32,
}

type Fast<K, V> = HashMap<K, V, ahash::RandomState>;

pub struct Mappings {
    slots: Vec<Mapping>,
    free: Vec<u32>,
    by_inside: Fast<u64, u32>,
    by_external: Fast<u64, u32>,
    /// (mapping, remote address) → sessions: address-dependent filtering.
    remotes: Fast<u64, u32>,
    subscribers: Fast<u32, Subscriber>,
}

impl Mappings {
    pub fn new(capacity: usize) -> Mappings {
        let rs = ahash::RandomState::new;
        // Sized for a busy start (the maps grow past this); a table sized in full for a
        // million sessions up front would hold ~100 MB before the first packet.
        let start = capacity.min(1 << 17);
        Mappings {
            slots: Vec::with_capacity(start),
            free: Vec::new(),
            by_inside: HashMap::with_capacity_and_hasher(start, rs()),
            by_external: HashMap::with_capacity_and_hasher(start, rs()),
            remotes: HashMap::with_capacity_and_hasher(start, rs()),
            subscribers: HashMap::with_capacity_and_hasher(start.min(1 << 12), rs()),
        }
    }

    pub fn len(&self) -> usize {
        self.by_inside.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_inside.is_empty()
    }

    pub fn get(&self, i: u32) -> Option<&Mapping> {
        self.slots.get(i as usize).filter(|m| m.live)
    }

    pub fn by_inside(&self, proto: u8, inside: Endpoint) -> Option<u32> {
        self.by_inside.get(&inside.key(proto)).copied()
    }

    pub fn by_external(&self, proto: u8, external: Endpoint) -> Option<u32> {
        self.by_external.get(&external.key(proto)).copied()
    }

    pub fn subscriber(&self, inside: u32) -> Option<&Subscriber> {
        self.subscribers.get(&inside)
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.len()
    }

    /// Records a new mapping (the caller took the external port).
    pub fn insert(&mut self, proto: u8, inside: Endpoint, external: Endpoint) -> u32 {
        let m = Mapping {
            proto,
            inside,
            external,
            sessions: 0,
            live: true,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = m;
                i
            }
            None => {
                self.slots.push(m);
                self.slots.len() as u32 - 1
            }
        };
        self.by_inside.insert(inside.key(proto), i);
        self.by_external.insert(external.key(proto), i);
        let sub = self.subscribers.entry(inside.addr).or_default();
        sub.external = external.addr;
        sub.ports += 1;
        i
    }

    /// A session starts using mapping `i` towards `remote`.
    pub fn attach(&mut self, i: u32, remote: u32) {
        if let Some(m) = self.slots.get_mut(i as usize).filter(|m| m.live) {
            m.sessions += 1;
            *self
                .remotes
                .entry((i as u64) << 32 | remote as u64)
                .or_default() += 1;
        }
    }

    /// A session towards `remote` stopped using mapping `i`. Returns the mapping if that
    /// was its last session (it is removed: the caller releases the external port).
    pub fn detach(&mut self, i: u32, remote: u32) -> Option<Mapping> {
        let m = self.slots.get_mut(i as usize).filter(|m| m.live)?;
        m.sessions = m.sessions.saturating_sub(1);
        let rk = (i as u64) << 32 | remote as u64;
        if let Some(n) = self.remotes.get_mut(&rk) {
            *n -= 1;
            if *n == 0 {
                self.remotes.remove(&rk);
            }
        }
        if m.sessions > 0 {
            return None;
        }
        m.live = false;
        let m = *m;
        self.by_inside.remove(&m.inside.key(m.proto));
        self.by_external.remove(&m.external.key(m.proto));
        self.free.push(i);
        if let Some(sub) = self.subscribers.get_mut(&m.inside.addr) {
            sub.ports = sub.ports.saturating_sub(1);
            if sub.ports == 0 && sub.sessions == 0 {
                self.subscribers.remove(&m.inside.addr);
            }
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

    /// Whether mapping `i` has a session towards `remote` (address-dependent filtering).
    pub fn has_sent_to(&self, i: u32, remote: u32) -> bool {
        self.remotes
            .contains_key(&((i as u64) << 32 | remote as u64))
    }

    pub fn add_session(&mut self, inside: u32) {
        self.subscribers.entry(inside).or_default().sessions += 1;
    }

    pub fn remove_session(&mut self, inside: u32) {
        if let Some(sub) = self.subscribers.get_mut(&inside) {
            sub.sessions = sub.sessions.saturating_sub(1);
            if sub.ports == 0 && sub.sessions == 0 {
                self.subscribers.remove(&inside);
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Mapping>()
            + (self.by_inside.capacity() + self.by_external.capacity()) * 13 * 8 / 7
            + self.remotes.capacity() * 13 * 8 / 7
            + self.subscribers.capacity() * (4 + 12 + 1) * 8 / 7
    }

    pub fn check(&self) -> Result<(), String> {
        for (i, m) in self.slots.iter().enumerate().filter(|(_, m)| m.live) {
            if self.by_inside(m.proto, m.inside) != Some(i as u32)
                || self.by_external(m.proto, m.external) != Some(i as u32)
            {
                return Err(format!("mapping {i}: index does not point at it"));
            }
            if m.sessions == 0 {
                return Err(format!("mapping {i}: live without sessions"));
            }
        }
        if self.by_inside.len() != self.by_external.len() {
            return Err("inside and external indices differ in size".into());
        }
        Ok(())
    }
}
