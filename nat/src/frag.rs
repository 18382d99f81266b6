//! Fragments of NATed datagrams. Only the first fragment carries ports, so the NAT
//! remembers, per datagram (source, destination, protocol, IP ID, as it arrived), what the
//! first fragment's translation was, and applies it to the later ones. Later fragments
//! that arrive before the first are held (copied, bounded) and released when it comes.
//! Every fragment's byte range is recorded: an overlap (a classic filter-evasion trick,
//! RFC 1858 §4) poisons the datagram and the rest of it is dropped.

use std::collections::{HashMap, VecDeque};

use crate::table::Handle;

/// Most datagrams remembered at once, and most ranges per datagram.
pub const MAX_DATAGRAMS: usize = 4096;
pub const MAX_RANGES: usize = 48;
/// Most later fragments held while their first fragment is missing.
pub const MAX_HELD: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DatagramKey {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub ident: u16,
}

#[derive(Debug)]
struct Datagram {
    /// The first fragment has been seen; `session` is its translation (`None`: no NAT).
    first_seen: bool,
    session: Option<Handle>,
    /// The shard the first fragment was handed to, when that is not this one: the later
    /// fragments follow it there (steering, with several workers).
    owner: Option<usize>,
    poisoned: bool,
    ranges: Vec<(u32, u32)>,
    expires: u64,
}

/// What to do with a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The first fragment is known: translate with this session (or not at all).
    Known(Option<Handle>),
    /// First fragment not seen yet: hold this one.
    Hold,
    /// Overlaps another fragment of its datagram, or too many fragments.
    Overlap,
}

pub struct Held {
    pub key: DatagramKey,
    pub tag: u16,
    pub packet: Vec<u8>,
    pub expires: u64,
}

#[derive(Default)]
pub struct Fragments {
    datagrams: HashMap<DatagramKey, Datagram, ahash::RandomState>,
    order: VecDeque<(u64, DatagramKey)>,
    held: Vec<Held>,
    released: Vec<Held>,
}

impl Fragments {
    pub fn new() -> Fragments {
        Fragments::default()
    }

    fn entry(&mut self, key: DatagramKey, now: u64, timeout: u64) -> Option<&mut Datagram> {
        if !self.datagrams.contains_key(&key) {
            if self.datagrams.len() >= MAX_DATAGRAMS {
                self.expire(u64::MAX, 1);
            }
            self.datagrams.insert(
                key,
                Datagram {
                    first_seen: false,
                    session: None,
                    owner: None,
                    poisoned: false,
                    ranges: Vec::new(),
                    expires: now + timeout,
                },
            );
            self.order.push_back((now + timeout, key));
        }
        self.datagrams.get_mut(&key)
    }

    /// Records the byte range [start, end) of a fragment; false if it overlaps.
    fn record(d: &mut Datagram, start: u32, end: u32) -> bool {
        if d.poisoned || d.ranges.len() >= MAX_RANGES {
            d.poisoned = true;
            return false;
        }
        if d.ranges.iter().any(|&(s, e)| start < e && s < end) {
            d.poisoned = true;
            return false;
        }
        d.ranges.push((start, end));
        true
    }

    /// A first fragment: records its range. Returns false if it overlaps. Held later
    /// fragments of the datagram are released once `set_session` settles its translation.
    pub fn first(&mut self, key: DatagramKey, end: u32, now: u64, timeout: u64) -> bool {
        let Some(d) = self.entry(key, now, timeout) else {
            return false;
        };
        if d.first_seen {
            d.poisoned = true;
            return false;
        }
        d.first_seen = true;
        d.expires = now + timeout;
        Self::record(d, 0, end)
    }

    /// A first fragment handed to shard `owner`: the later ones are to follow it, and those
    /// held here are released (to be steered there when they come through again).
    pub fn hand_to(&mut self, key: DatagramKey, owner: usize, now: u64, timeout: u64) {
        if let Some(d) = self.entry(key, now, timeout) {
            d.first_seen = true;
            d.owner = Some(owner);
            d.expires = now + timeout;
        }
        // No translation here; this releases the held ones.
        self.set_session(key, None);
    }

    /// The shard this datagram's first fragment was handed to, if any.
    pub fn owner(&self, key: &DatagramKey) -> Option<usize> {
        self.datagrams.get(key).and_then(|d| d.owner)
    }

    /// The translation the first fragment got; releases the held later fragments.
    pub fn set_session(&mut self, key: DatagramKey, session: Option<Handle>) {
        if let Some(d) = self.datagrams.get_mut(&key) {
            d.session = session;
        }
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].key == key {
                let h = self.held.swap_remove(i);
                self.released.push(h);
            } else {
                i += 1;
            }
        }
    }

    /// A later fragment covering [start, end).
    pub fn later(
        &mut self,
        key: DatagramKey,
        start: u32,
        end: u32,
        now: u64,
        timeout: u64,
    ) -> Verdict {
        let Some(d) = self.entry(key, now, timeout) else {
            return Verdict::Overlap;
        };
        if !Self::record(d, start, end) {
            return Verdict::Overlap;
        }
        d.expires = now + timeout;
        if d.first_seen {
            Verdict::Known(d.session)
        } else {
            Verdict::Hold
        }
    }

    /// Keeps a copy of a later fragment, covering [start, end), until its first fragment
    /// comes. False if full. The range is unrecorded: the fragment is checked again when it
    /// comes back through the pipeline.
    #[allow(clippy::too_many_arguments)]
    pub fn hold(
        &mut self,
        key: DatagramKey,
        range: (u32, u32),
        tag: u16,
        packet: &[u8],
        now: u64,
        timeout: u64,
    ) -> bool {
        if let Some(d) = self.datagrams.get_mut(&key) {
            d.ranges.retain(|&r| r != range);
        }
        if self.held.len() >= MAX_HELD {
            return false;
        }
        self.held.push(Held {
            key,
            tag,
            packet: packet.to_vec(),
            expires: now + timeout,
        });
        true
    }

    /// Later fragments whose first fragment has come: run them through the pipeline again.
    pub fn take_released(&mut self) -> Vec<Held> {
        std::mem::take(&mut self.released)
    }

    pub fn has_released(&self) -> bool {
        !self.released.is_empty()
    }

    /// Forgets datagrams and held fragments past their time (at most `budget` datagrams).
    /// Returns how many held fragments timed out (they are dropped).
    pub fn expire(&mut self, now: u64, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(&(at, key)) = self.order.front() else {
                break;
            };
            if at > now {
                break;
            }
            self.order.pop_front();
            match self.datagrams.get(&key) {
                // Refreshed since: queue it again at its new time.
                Some(d) if d.expires > at && now != u64::MAX => {
                    self.order.push_back((d.expires, key))
                }
                Some(_) => {
                    self.datagrams.remove(&key);
                }
                None => {}
            }
            n += 1;
        }
        let before = self.held.len();
        self.held.retain(|h| h.expires > now);
        before - self.held.len()
    }

    pub fn len(&self) -> usize {
        self.datagrams.len()
    }
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: DatagramKey = DatagramKey {
        src: 1,
        dst: 2,
        proto: 17,
        ident: 7,
    };

    #[test]
    fn out_of_order_later_fragment_is_held_then_released() {
        let mut f = Fragments::new();
        assert_eq!(f.later(K, 1480, 2000, 0, 2000), Verdict::Hold);
        assert!(f.hold(K, (1480, 2000), 3, &[1, 2, 3], 0, 2000));
        assert!(f.first(K, 1480, 10, 2000));
        f.set_session(K, None);
        let r = f.take_released();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].tag, 3);
        assert_eq!(f.later(K, 2000, 2100, 20, 2000), Verdict::Known(None));
    }

    #[test]
    fn overlap_poisons_the_datagram() {
        let mut f = Fragments::new();
        assert!(f.first(K, 1480, 0, 2000));
        assert_eq!(f.later(K, 1000, 2000, 0, 2000), Verdict::Overlap);
        assert_eq!(f.later(K, 2960, 3000, 0, 2000), Verdict::Overlap);
    }

    #[test]
    fn datagrams_expire() {
        let mut f = Fragments::new();
        assert!(f.first(K, 1480, 0, 2000));
        let k8 = DatagramKey { ident: 8, ..K };
        assert_eq!(f.later(k8, 1480, 1500, 0, 2000), Verdict::Hold);
        assert!(f.hold(k8, (1480, 1500), 0, &[0], 0, 2000));
        assert_eq!(f.expire(1000, 10), 0);
        assert_eq!(f.len(), 2);
        assert_eq!(f.expire(2000, 10), 1);
        assert_eq!(f.len(), 0);
    }
}
