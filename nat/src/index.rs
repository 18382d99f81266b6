//! The session index: the hash of a flow key → a session slot and direction, in
//! cache-line buckets that a burst can prefetch before it looks anything up.
//!
//! Each 64-byte bucket holds seven entries as a 32-bit tag (the hash's high half) and a
//! value; the full key is not stored: it is the session's own `orig` or `reply` flow, which
//! the caller compares (it reads the session next anyway). A lookup therefore costs one
//! bucket line and one session line, and both can be fetched early: `prefetch` by hash,
//! then `first_candidate` to prefetch the session.
//!
//! Collisions go to the next bucket (linear probing by bucket). Each bucket counts the
//! entries that probed past it (`overflow`, as in Folly's F14): a lookup stops at the first
//! bucket with a zero count, and removal decrements the counts along the same path, so no
//! tombstones build up under churn and the table never needs rehashing. The table is sized
//! at construction for at most `keys` entries at ≤ ~70 % of its slots.

use crate::mem::huge_vec;

const SLOTS: usize = 7;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u32; SLOTS],
    /// Value + 1; 0 is an empty entry.
    values: [u32; SLOTS],
    /// Entries stored past this bucket whose probe passed through it.
    overflow: u32,
    _pad: u32,
}

pub struct Index {
    buckets: Vec<Bucket>,
    mask: usize,
    len: usize,
    limit: usize,
    hasher: ahash::RandomState,
}

#[inline(always)]
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

impl Bucket {
    /// The entries whose tag is `tag`, as a bit mask (bit i: entry i): two vector compares
    /// instead of seven branches. An empty entry can match (tag 0), so callers still
    /// check the value.
    #[inline(always)]
    fn tag_matches(&self, tag: u32) -> u32 {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::*;
            // SAFETY: SSE2 is part of x86_64. Both 16-byte loads lie inside the bucket
            // (`repr(C)`: tags at bytes 0..28, then values), unaligned loads; the second
            // covers tags 4..7 and values[0], whose lane is masked off.
            unsafe {
                let want = _mm_set1_epi32(tag as i32);
                let p = self.tags.as_ptr().cast::<u8>();
                let lo = _mm_loadu_si128(p.cast());
                let hi = _mm_loadu_si128(p.add(16).cast());
                let lo = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(lo, want))) as u32;
                let hi = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(hi, want))) as u32;
                (lo | hi << 4) & ((1 << SLOTS) - 1)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let mut mask = 0;
            for (i, &t) in self.tags.iter().enumerate() {
                mask |= ((t == tag) as u32) << i;
            }
            mask
        }
    }
}

impl Index {
    /// An index for at most `keys` entries, allocated now (on transparent huge pages where
    /// the kernel offers them). The hash has a random seed per process, so nobody can aim
    /// flows at one bucket.
    pub fn with_capacity(keys: usize) -> Index {
        let buckets = (keys.max(1) * 10).div_ceil(SLOTS * 7).next_power_of_two();
        Index {
            buckets: huge_vec(buckets, Bucket::default()),
            mask: buckets - 1,
            len: 0,
            limit: keys.max(1),
            hasher: ahash::RandomState::new(),
        }
    }

    #[inline(always)]
    pub fn hash(&self, key: u128) -> u64 {
        self.hasher.hash_one(key)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn bytes(&self) -> usize {
        self.buckets.capacity() * std::mem::size_of::<Bucket>()
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Starts fetching the bucket `hash` lives in.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        crate::mem::prefetch(&self.buckets[self.home(hash)]);
    }

    /// The first value in `hash`'s home bucket with a matching tag: the entry a lookup will
    /// almost always check, so its session can be prefetched.
    #[inline(always)]
    pub fn first_candidate(&self, hash: u64) -> Option<u32> {
        let b = &self.buckets[self.home(hash)];
        let mut mask = b.tag_matches(tag_of(hash));
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            if b.values[i] != 0 {
                return Some(b.values[i] - 1);
            }
            mask &= mask - 1;
        }
        None
    }

    /// The value stored under `hash` that `is_key` accepts (it checks the full key).
    #[inline]
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mut at = self.home(hash);
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[at];
            let mut mask = b.tag_matches(tag);
            while mask != 0 {
                let i = mask.trailing_zeros() as usize;
                if b.values[i] != 0 && is_key(b.values[i] - 1) {
                    return Some(b.values[i] - 1);
                }
                mask &= mask - 1;
            }
            if b.overflow == 0 {
                return None;
            }
            at = (at + 1) & self.mask;
        }
        None
    }

    /// Adds `value` under `hash` (the caller made sure the key is not there). False when
    /// the index already holds its capacity.
    pub fn insert(&mut self, hash: u64, value: u32) -> bool {
        if self.len >= self.limit || value == u32::MAX {
            return false;
        }
        let tag = tag_of(hash);
        let mut at = self.home(hash);
        // Below the limit there is an empty entry somewhere: this ends within one lap.
        for _ in 0..self.buckets.len() {
            let b = &mut self.buckets[at];
            if let Some(i) = b.values.iter().position(|&v| v == 0) {
                b.tags[i] = tag;
                b.values[i] = value + 1;
                self.len += 1;
                return true;
            }
            b.overflow += 1;
            at = (at + 1) & self.mask;
        }
        false
    }

    /// Removes `value` stored under `hash`; false if it is not there.
    pub fn remove(&mut self, hash: u64, value: u32) -> bool {
        let mut at = self.home(hash);
        let mut passed = 0;
        loop {
            let b = &mut self.buckets[at];
            if let Some(i) = b.values.iter().position(|&v| v == value + 1) {
                b.values[i] = 0;
                b.tags[i] = 0;
                self.len -= 1;
                break;
            }
            if b.overflow == 0 || passed == self.buckets.len() {
                return false;
            }
            passed += 1;
            at = (at + 1) & self.mask;
        }
        // Undo the overflow counts the insertion left along its path.
        let mut at = self.home(hash);
        for _ in 0..passed {
            self.buckets[at].overflow -= 1;
            at = (at + 1) & self.mask;
        }
        true
    }

    /// Every stored value (for the invariant check).
    pub fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets
            .iter()
            .flat_map(|b| b.values.iter().filter(|&&v| v != 0).map(|&v| v - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Many keys forced into few buckets: probing, overflow counts and removal from the
    /// middle of a probe chain keep every remaining key findable, and the counts return
    /// to zero when the table empties.
    #[test]
    fn collisions_overflow_and_removal_keep_every_key_findable() {
        let mut ix = Index::with_capacity(700);
        let n = ix.buckets.len();
        // Hashes that all start in buckets 0..4, with distinct tags.
        let hash = |k: u32| ((k as u64) << 32) | (k as u64 % 4);
        let keys: Vec<u32> = (0..(n as u32 * 5).min(690)).collect();
        for &k in &keys {
            assert!(ix.insert(hash(k), k));
        }
        let find = |ix: &Index, k: u32| ix.find(hash(k), |v| v == k);
        for &k in &keys {
            assert_eq!(find(&ix, k), Some(k), "key {k}");
        }
        // Remove every third key, including ones whose probe passed full buckets.
        for &k in keys.iter().filter(|k| *k % 3 == 0) {
            assert!(ix.remove(hash(k), k));
            assert!(!ix.remove(hash(k), k), "key {k} removed twice");
        }
        for &k in &keys {
            let expect = (k % 3 != 0).then_some(k);
            assert_eq!(find(&ix, k), expect, "key {k}");
        }
        for &k in keys.iter().filter(|k| *k % 3 != 0) {
            assert!(ix.remove(hash(k), k));
        }
        assert_eq!(ix.len(), 0);
        assert!(ix.buckets.iter().all(|b| b.overflow == 0));
    }

    #[test]
    fn the_capacity_is_a_hard_limit() {
        let mut ix = Index::with_capacity(10);
        for k in 0..10 {
            assert!(ix.insert(ix.hash(k), k as u32));
        }
        assert!(!ix.insert(ix.hash(10), 10));
        assert_eq!(ix.len(), 10);
    }

    #[test]
    fn first_candidate_names_the_entry_find_returns() {
        let mut ix = Index::with_capacity(1000);
        for k in 0..1000u32 {
            ix.insert(ix.hash(k as u128), k);
        }
        let agree = (0..1000u32)
            .filter(|&k| ix.first_candidate(ix.hash(k as u128)) == Some(k))
            .count();
        // A candidate differs only on a tag collision in the home bucket or an overflow.
        assert!(agree > 950, "{agree} of 1000");
        for k in 0..1000u32 {
            assert_eq!(ix.find(ix.hash(k as u128), |v| v == k), Some(k));
        }
    }
}
