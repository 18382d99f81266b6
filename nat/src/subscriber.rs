//! Per-subscriber (inside host) accounting: the external address its mappings share
//! (paired pooling, RFC 4787 REQ-2) and its session and port counts (quotas, RFC 6888
//! REQ-4/5).
//!
//! A new session reads and updates its host's record three or four times (the paired
//! address, the quotas, the port and session counts). The records live in a slab found
//! through one hash map, so the new-session path hashes the address once, takes the
//! slot's `SubscriberId`, and does the rest by index.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, Default)]
pub struct Subscriber {
    pub addr: u32,
    /// The external address all of this host's mappings use (paired pooling).
    pub external: u32,
    pub sessions: u32,
    pub ports: u32,
}

impl Subscriber {
    fn idle(&self) -> bool {
        self.ports == 0 && self.sessions == 0
    }
}

/// A subscriber's slot. Valid while the host has a mapping or a session, or until the
/// caller that opened it releases it: hold it for one new-session decision, not longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberId(u32);

pub struct Subscribers {
    slots: Vec<Subscriber>,
    free: Vec<u32>,
    by_addr: HashMap<u32, u32, ahash::RandomState>,
}

impl Subscribers {
    pub fn with_capacity(n: usize) -> Subscribers {
        Subscribers {
            slots: Vec::with_capacity(n),
            free: Vec::new(),
            by_addr: HashMap::with_capacity_and_hasher(n, ahash::RandomState::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.by_addr.len()
    }

    pub fn find(&self, addr: u32) -> Option<SubscriberId> {
        self.by_addr.get(&addr).map(|&i| SubscriberId(i))
    }

    /// The host's slot, made (empty) if it has none. An empty one the caller did not fill
    /// is given back with `release_if_idle`.
    pub fn open(&mut self, addr: u32) -> SubscriberId {
        let (slots, free) = (&mut self.slots, &mut self.free);
        let i = *self.by_addr.entry(addr).or_insert_with(|| {
            let s = Subscriber {
                addr,
                ..Subscriber::default()
            };
            match free.pop() {
                Some(i) => {
                    slots[i as usize] = s;
                    i
                }
                None => {
                    slots.push(s);
                    slots.len() as u32 - 1
                }
            }
        });
        SubscriberId(i)
    }

    pub fn get(&self, id: SubscriberId) -> &Subscriber {
        &self.slots[id.0 as usize]
    }

    pub fn get_mut(&mut self, id: SubscriberId) -> &mut Subscriber {
        &mut self.slots[id.0 as usize]
    }

    /// Frees the slot if the host has neither mappings nor sessions left.
    pub fn release_if_idle(&mut self, id: SubscriberId) {
        let s = self.slots[id.0 as usize];
        if s.idle() && self.by_addr.remove(&s.addr).is_some() {
            self.free.push(id.0);
        }
    }

    pub fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Subscriber>()
            + self.by_addr.capacity() * (4 + 4 + 1) * 8 / 7
    }

    /// Every live slot is found by its address, and no free slot is.
    pub fn check(&self) -> Result<(), String> {
        let free: std::collections::HashSet<u32> = self.free.iter().copied().collect();
        for (&addr, &i) in &self.by_addr {
            match self.slots.get(i as usize) {
                Some(s) if s.addr == addr && !free.contains(&i) => {}
                _ => return Err(format!("subscriber {addr:#x}: index points at slot {i}")),
            }
        }
        if self.by_addr.len() + self.free.len() != self.slots.len() {
            return Err(format!(
                "{} subscribers + {} free slots != {} slots",
                self.by_addr.len(),
                self.free.len(),
                self.slots.len()
            ));
        }
        Ok(())
    }
}
