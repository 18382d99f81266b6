//! The lookup structure shared by IPv4 and IPv6: a leaf-pushed multibit trie with a direct
//! first level (`2^first` entries) and 256-entry groups below it (8 bits per level).
//!
//! For IPv4 with `first = 24` this is DPDK's DIR-24-8: one memory access for prefixes up to
//! /24, two beyond. For IPv6 with `first = 16` it is the `rte_fib6` trie shape: a /48 costs
//! five accesses.
//!
//! Every entry is one `AtomicU32` (see [`entry`]). A leaf entry holds the next hop *and the
//! length of the prefix it came from*; that depth is what lets the writer update in place
//! without a second structure: an insert overwrites only entries of depth ≤ its own, a delete
//! rewrites only entries of exactly its depth, with the next shorter covering prefix.
//!
//! # Publication protocol (one writer, wait-free readers)
//!
//! * A reader loads entries with `Acquire` and follows group links; it never writes, never
//!   retries and never waits: a lookup is at most `1 + (bits - first) / 8` loads.
//! * The writer changes an existing entry with one `Release` store. Each entry goes from the
//!   old answer to the new one, so a concurrent reader sees one or the other — both were the
//!   right answer for that address at an instant of the update.
//! * A new group is filled completely (a copy of the entry it refines, then the new routes)
//!   *before* the `Release` store that links it; a reader that sees the link sees the group.
//! * A group whose 256 entries become identical leaves is collapsed: the parent entry gets
//!   that leaf (one store) and the group is retired. It returns to the free list only after a
//!   QSBR grace period ([`crate::qsbr`]), so a reader still walking it reads the values it
//!   had when it was unlinked — still legal answers — and never reused memory.

use std::hash::Hash;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::Arc;

use crate::mem::AtomicRegion;
use crate::qsbr::{Qsbr, Retired};
use crate::FibError;

/// Entry encoding: one 32-bit word.
///
/// ```text
///  31  30 ........ 23 22 .................... 0
/// [ 1 |        group index (31 bits)           ]   link to a 256-entry group
/// [ 0 | depth + 1 (8) |   next hop (23 bits)   ]   leaf; depth + 1 == 0 means "no route"
/// ```
pub(crate) mod entry {
    pub const LINK: u32 = 1 << 31;
    pub const EMPTY: u32 = 0;
    pub const NH_BITS: u32 = 23;
    pub const NH_MASK: u32 = (1 << NH_BITS) - 1;

    #[inline(always)]
    pub fn is_link(e: u32) -> bool {
        e & LINK != 0
    }
    #[inline(always)]
    pub fn group(e: u32) -> usize {
        (e & !LINK) as usize
    }
    #[inline(always)]
    pub fn link(group: u32) -> u32 {
        LINK | group
    }
    /// `depth + 1` of a leaf; 0 for an empty entry, so "depth ≤ d" is `depth1 ≤ d + 1`.
    #[inline(always)]
    pub fn depth1(e: u32) -> u32 {
        e >> NH_BITS
    }
    #[inline(always)]
    pub fn leaf(depth: u8, next_hop: u32) -> u32 {
        ((depth as u32 + 1) << NH_BITS) | next_hop
    }
    /// The next hop of a leaf, or `None` for an empty entry.
    #[inline(always)]
    pub fn next_hop(e: u32) -> Option<u32> {
        (e != EMPTY).then_some(e & NH_MASK)
    }
}

/// The largest next-hop index a FIB entry can hold.
pub const MAX_NEXT_HOP: u32 = entry::NH_MASK;

const GROUP: usize = 256;

/// Groups an insert leaves free so that a remove can always refine a collapsed entry
/// (at most one group per level: 14 for IPv6).
const REMOVE_RESERVE: usize = 16;

/// The smallest pool a writer settles for when the address space it asked for cannot be
/// reserved (64 MiB of groups).
const MIN_RESERVED_GROUPS: u32 = 1 << 16;

/// An address as a big-endian bit string.
pub trait Key: Copy + Eq + Hash + Ord + std::fmt::Debug + Send + Sync + 'static {
    const BITS: u8;
    /// Bits resolved by the first-level table (`2^FIRST` entries). A constant of the type,
    /// so the lookup's shifts are immediates.
    const FIRST: u8;
    /// Levels below the first that a lookup walks branch-free (see `Tables::descend`).
    const BRANCH_FREE_LEVELS: u8;
    /// `len` (1..=24) bits starting `start` bits from the most significant end.
    fn bits(self, start: u8, len: u8) -> usize;
    /// The key with every bit after the first `len` cleared.
    fn masked(self, len: u8) -> Self;
}

impl Key for u32 {
    const BITS: u8 = 32;
    const FIRST: u8 = 24;
    // DIR-24-8 has one level below the first, reached by few keys: the branch predicts.
    const BRANCH_FREE_LEVELS: u8 = 0;
    #[inline(always)]
    fn bits(self, start: u8, len: u8) -> usize {
        ((self << start) >> (32 - len)) as usize
    }
    #[inline(always)]
    fn masked(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (32 - len))
        }
    }
}

impl Key for u128 {
    const BITS: u8 = 128;
    const FIRST: u8 = 16;
    // 16 + 4 × 8 = /48, the most common IPv6 prefix length and the end of most walks.
    const BRANCH_FREE_LEVELS: u8 = 4;
    #[inline(always)]
    fn bits(self, start: u8, len: u8) -> usize {
        ((self << start) >> (128 - len)) as usize
    }
    #[inline(always)]
    fn masked(self, len: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (128 - len))
        }
    }
}

/// The memory readers touch: the first level and the group pool.
pub(crate) struct Tables {
    root: AtomicRegion,
    groups: AtomicRegion,
}

impl Tables {
    /// The raw leaf entry for `key` (wait-free: a bounded number of loads).
    #[inline(always)]
    pub(crate) fn lookup<K: Key>(&self, key: K) -> u32 {
        let e = self.root.slice()[key.bits(0, K::FIRST)].load(Acquire);
        self.descend(key, e)
    }

    /// Continues a walk from a first-level entry.
    ///
    /// Below a link, the first [`Key::BRANCH_FREE_LEVELS`] levels are walked without a
    /// branch on the entries: a leaf found early is carried through the remaining steps by
    /// a select, and those steps load entry 0 of group 0 (masked index), which stays in
    /// L1. Where the walk ends depends on the matching prefix's length, which varies from
    /// key to key; as a branch it mispredicts about once per lookup, and the flush
    /// discards the next lookups the CPU had already started, so their cache misses could
    /// not overlap. This only paid once the walk was short in instructions too (constant
    /// shifts, [`Key::FIRST`]): the overlap is bounded by how many lookups fit in the
    /// reorder window (IPv6 in-table single lookups 1.36× faster than with the branch).
    #[inline(always)]
    fn descend<K: Key>(&self, key: K, mut e: u32) -> u32 {
        let groups = &self.groups;
        let mut start = K::FIRST;
        if K::BRANCH_FREE_LEVELS > 0 && entry::is_link(e) {
            for _ in 0..K::BRANCH_FREE_LEVELS {
                let on_link = 0usize.wrapping_sub((e >> 31) as usize);
                let index = (entry::group(e) * GROUP + key.bits(start, 8)) & on_link;
                let next = groups.linked(index).load(Acquire);
                e = if entry::is_link(e) { next } else { e };
                start += 8;
            }
        }
        while entry::is_link(e) {
            e = groups
                .linked(entry::group(e) * GROUP + key.bits(start, 8))
                .load(Acquire);
            start += 8;
        }
        e
    }

    /// Batched lookup, level-synchronous: for a chunk of keys, the entries of one level are
    /// all prefetched before any is read, so the cache misses of the chunk overlap instead
    /// of queueing behind each other (an IPv6 /48 is five dependent loads per key).
    ///
    /// `key(i)` gives the i-th key (the caller's addresses are converted on the fly rather
    /// than staged); `out[i]` gets the next hop, `no_route` where nothing matches. Each
    /// entry read is resolved as it is stored: a link's value is overwritten one level
    /// down, so no pass over `out` is needed at the end.
    #[inline(always)]
    pub(crate) fn lookup_batch<K: Key>(
        &self,
        n: usize,
        key: impl Fn(usize) -> K,
        out: &mut [u32],
        no_route: u32,
    ) {
        const CHUNK: usize = 32;
        let root = self.root.slice();
        let groups = &self.groups;
        let resolve = |e: u32| entry::next_hop(e).unwrap_or(no_route);
        // A first level that stays in L2 (IPv6's 2^16 entries, 256 KiB) is read at once; a
        // larger one (IPv4's 64 MiB) is prefetched for the whole chunk first.
        let prefetch_root = K::FIRST > 16;
        let mut base = 0;
        for out in out[..n].chunks_mut(CHUNK) {
            let mut at = [0usize; CHUNK];
            if prefetch_root {
                for (j, a) in at.iter_mut().enumerate().take(out.len()) {
                    *a = key(base + j).bits(0, K::FIRST);
                    prefetch(self.root.as_ptr().wrapping_add(*a));
                }
            }
            let mut walking = [0u8; CHUNK];
            let mut pending = 0;
            for (j, o) in out.iter_mut().enumerate() {
                let first = if prefetch_root {
                    at[j]
                } else {
                    key(base + j).bits(0, K::FIRST)
                };
                let e = root[first].load(Acquire);
                *o = resolve(e);
                if entry::is_link(e) {
                    at[j] = entry::group(e) * GROUP + key(base + j).bits(K::FIRST, 8);
                    prefetch(self.groups.as_ptr().wrapping_add(at[j]));
                    walking[pending] = j as u8;
                    pending += 1;
                }
            }
            let mut start = K::FIRST + 8;
            while pending > 0 {
                let mut still = 0;
                for w in 0..pending {
                    let j = walking[w] as usize;
                    let e = groups.linked(at[j]).load(Acquire);
                    out[j] = resolve(e);
                    if entry::is_link(e) {
                        at[j] = entry::group(e) * GROUP + key(base + j).bits(start, 8);
                        prefetch(self.groups.as_ptr().wrapping_add(at[j]));
                        walking[still] = j as u8;
                        still += 1;
                    }
                }
                pending = still;
                start += 8;
            }
            base += out.len();
        }
    }

    fn bytes_root(&self) -> usize {
        self.root.slice().len() * 4
    }
}

#[inline(always)]
fn prefetch(p: *const AtomicU32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never faults, even on an invalid address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p.cast::<i8>(), std::arch::x86_64::_MM_HINT_T0)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Which table a writer operation is working on.
#[derive(Clone, Copy)]
enum Table {
    Root,
    Group(usize),
}

/// The single writer: owns the control-side copy of the routes (one hash map per prefix
/// length, used to find the shorter prefix that takes over on delete) and the group pool.
pub(crate) struct Writer<K: Key> {
    tables: Arc<Tables>,
    qsbr: Arc<Qsbr>,
    routes: Vec<ahash::AHashMap<K, u32>>,
    route_count: usize,
    /// Groups handed out so far (the next fresh one is this index).
    high_water: u32,
    free: Vec<u32>,
    detached: Vec<u32>,
    retired: Retired<Vec<u32>>,
}

impl<K: Key> Writer<K> {
    /// A writer whose group pool can grow to `max_groups` (address space is reserved for
    /// all of them; memory is committed as the pool grows).
    pub(crate) fn new(max_groups: u32, qsbr: Arc<Qsbr>) -> Result<Self, FibError> {
        // At least one group: the branch-free walk reads group 0 even when none is used.
        let groups = Self::reserve_groups(max_groups.clamp(1, entry::LINK - 1))?;
        groups.commit(GROUP).map_err(FibError::Memory)?;
        let tables = Tables {
            root: AtomicRegion::zeroed(1usize << K::FIRST).map_err(FibError::Memory)?,
            groups,
        };
        Ok(Writer {
            tables: Arc::new(tables),
            qsbr,
            routes: (0..=K::BITS).map(|_| Default::default()).collect(),
            route_count: 0,
            high_water: 0,
            free: Vec::new(),
            detached: Vec::new(),
            retired: Retired::default(),
        })
    }

    /// Address space for `max_groups` groups, or for fewer where the process may not map
    /// that much (an address-space rlimit, or valgrind's own cap): halved until it maps,
    /// but not below [`MIN_RESERVED_GROUPS`]. `group_stats().limit` reports what it got.
    fn reserve_groups(max_groups: u32) -> Result<AtomicRegion, FibError> {
        let mut groups = max_groups;
        loop {
            match AtomicRegion::reserve(groups as usize * GROUP) {
                Ok(region) => return Ok(region),
                Err(_) if groups / 2 >= MIN_RESERVED_GROUPS => groups /= 2,
                Err(e) => return Err(FibError::Memory(e)),
            }
        }
    }

    pub(crate) fn tables(&self) -> &Arc<Tables> {
        &self.tables
    }

    pub(crate) fn len(&self) -> usize {
        self.route_count
    }

    pub(crate) fn get(&self, key: K, len: u8) -> Option<u32> {
        self.routes[len as usize].get(&key).copied()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (K, u8, u32)> + '_ {
        self.routes
            .iter()
            .enumerate()
            .flat_map(|(len, map)| map.iter().map(move |(&k, &nh)| (k, len as u8, nh)))
    }

    /// Groups linked into the tables or waiting out a grace period.
    pub(crate) fn groups_in_use(&self) -> usize {
        self.high_water as usize - self.free.len()
    }

    /// The group pool: (linked or in a grace period, free, ever used, committed, limit).
    pub(crate) fn group_stats(&self) -> crate::GroupStats {
        crate::GroupStats {
            in_use: self.groups_in_use(),
            free: self.free.len(),
            high_water: self.high_water as usize,
            capacity: self.committed_groups(),
            limit: self.tables.groups.reserved() / GROUP,
        }
    }

    fn committed_groups(&self) -> usize {
        self.tables.groups.committed() / GROUP
    }

    pub(crate) fn bytes(&self) -> usize {
        self.tables.bytes_root() + self.groups_in_use() * GROUP * 4
    }

    /// Inserts or replaces `key/len → next_hop`; returns the previous next hop.
    /// The caller has masked `key` and checked `len` and `next_hop`.
    pub(crate) fn insert(
        &mut self,
        key: K,
        len: u8,
        next_hop: u32,
    ) -> Result<Option<u32>, FibError> {
        self.ensure_groups(len, REMOVE_RESERVE)?;
        Ok(self.write_route(key, len, next_hop))
    }

    /// Puts back a next hop an insert replaced, when undoing: like a remove, it may draw on
    /// the groups inserts keep in reserve (refining an entry the insert collapsed).
    pub(crate) fn restore(&mut self, key: K, len: u8, next_hop: u32) -> Result<(), FibError> {
        self.ensure_groups(len, 0)?;
        self.write_route(key, len, next_hop);
        Ok(())
    }

    fn write_route(&mut self, key: K, len: u8, next_hop: u32) -> Option<u32> {
        let previous = self.routes[len as usize].insert(key, next_hop);
        if previous.is_none() {
            self.route_count += 1;
        }
        if previous != Some(next_hop) {
            self.write_range(
                Table::Root,
                0,
                key,
                len,
                entry::leaf(len, next_hop),
                Rule::Insert,
            );
        }
        previous
    }

    /// Removes `key/len`; returns its next hop if it was present.
    pub(crate) fn remove(&mut self, key: K, len: u8) -> Result<Option<u32>, FibError> {
        if !self.routes[len as usize].contains_key(&key) {
            return Ok(None);
        }
        self.ensure_groups(len, 0)?;
        let Some(next_hop) = self.routes[len as usize].remove(&key) else {
            return Ok(None);
        };
        self.route_count -= 1;
        let successor = self.covering(key, len);
        self.write_range(
            Table::Root,
            0,
            key,
            len,
            successor,
            Rule::Remove {
                depth1: len as u32 + 1,
            },
        );
        Ok(Some(next_hop))
    }

    /// A write to a route longer than the first level may need one new group per level
    /// below it. Checked (and the pool grown) before anything is touched, so a refused
    /// write changes nothing; inserts leave `reserve` groups for removes, which can refine
    /// a collapsed entry.
    fn ensure_groups(&mut self, len: u8, reserve: usize) -> Result<(), FibError> {
        if len <= K::FIRST {
            return Ok(());
        }
        let needed = (len - K::FIRST).div_ceil(8) as usize + reserve;
        if self.available_groups() >= needed {
            return Ok(());
        }
        self.reclaim();
        let short = needed.saturating_sub(self.available_groups());
        if short == 0 {
            return Ok(());
        }
        let limit = self.tables.groups.reserved() / GROUP;
        let want = self.committed_groups() + short;
        if want > limit {
            return Err(FibError::GroupsExhausted {
                limit: limit as u32,
            });
        }
        // Grows in whole huge pages (2048 groups); the array does not move, so readers
        // are unaffected.
        self.tables
            .groups
            .commit(want * GROUP)
            .map_err(FibError::Memory)
    }

    fn available_groups(&self) -> usize {
        self.free.len() + self.committed_groups() - self.high_water as usize
    }

    /// Ends a write (or a batch of writes): groups detached by it start their grace period.
    pub(crate) fn publish(&mut self) {
        if !self.detached.is_empty() {
            let epoch = self.qsbr.advance();
            self.retired.push(epoch, std::mem::take(&mut self.detached));
        }
        // Earlier batches whose readers have moved on: back to the free list, so `bytes`
        // reports what is linked or still in its grace period.
        self.reclaim();
    }

    /// Returns groups whose grace period has passed to the free list.
    pub(crate) fn reclaim(&mut self) {
        if self.retired.len() == 0 {
            return;
        }
        let safe = self.qsbr.safe_epoch();
        let free = &mut self.free;
        self.retired.drain_safe(safe, |groups| free.extend(groups));
    }

    /// The leaf of the longest route strictly shorter than `len` that covers `key`.
    fn covering(&self, key: K, len: u8) -> u32 {
        (0..len)
            .rev()
            .find_map(|l| {
                let map = &self.routes[l as usize];
                if map.is_empty() {
                    return None;
                }
                map.get(&key.masked(l)).map(|&nh| entry::leaf(l, nh))
            })
            .unwrap_or(entry::EMPTY)
    }

    fn slot(&self, table: Table, index: usize) -> &AtomicU32 {
        match table {
            Table::Root => &self.tables.root.slice()[index],
            Table::Group(g) => &self.tables.groups.slice()[g * GROUP + index],
        }
    }

    /// Bit range `[start, end)` of the address that indexes tables at `level`.
    fn span(&self, level: u8) -> (u8, u8) {
        match level {
            0 => (0, K::FIRST),
            _ => {
                let start = K::FIRST + 8 * (level - 1);
                (start, start + 8)
            }
        }
    }

    /// Applies `rule` with `leaf` to the part of `table` (at `level`) that `key/len` covers,
    /// descending (and creating groups for inserts) where the prefix ends below this level.
    fn write_range(&mut self, table: Table, level: u8, key: K, len: u8, leaf: u32, rule: Rule) {
        let (start, end) = self.span(level);
        if len <= end {
            // `key` is masked and `len > start` below the first level, so this is the whole
            // aligned block of entries the prefix covers at this level.
            let first = key.bits(start, end - start);
            let count = 1usize << (end - len);
            for index in first..first + count {
                self.apply(table, index, leaf, rule);
            }
            return;
        }
        let index = key.bits(start, end - start);
        let e = self.slot(table, index).load(Relaxed);
        if entry::is_link(e) {
            let child = entry::group(e);
            self.write_range(Table::Group(child), level + 1, key, len, leaf, rule);
            self.collapse_if_uniform(table, index, child);
            return;
        }
        let needs_group = match rule {
            Rule::Insert => true,
            // A collapsed entry of exactly the removed depth stands for the removed prefix
            // over part of its span: refine it, remove there, and keep what stays.
            Rule::Remove { depth1 } => entry::depth1(e) == depth1,
        };
        if !needs_group {
            return;
        }
        // `ensure_groups` guaranteed one group per level on this path.
        let Some(child) = self.allocate_group() else {
            return;
        };
        for slot in &self.tables.groups.slice()[child * GROUP..(child + 1) * GROUP] {
            slot.store(e, Relaxed);
        }
        self.write_range(Table::Group(child), level + 1, key, len, leaf, rule);
        match self.uniform_leaf(child) {
            // Nothing left to refine: keep the single leaf, drop the never-published group.
            Some(leaf) => {
                self.slot(table, index).store(leaf, Release);
                self.free.push(child as u32);
            }
            None => self
                .slot(table, index)
                .store(entry::link(child as u32), Release),
        }
    }

    /// Applies `rule` to one entry, and to everything below it if it is a link.
    fn apply(&mut self, table: Table, index: usize, leaf: u32, rule: Rule) {
        let slot = self.slot(table, index);
        let e = slot.load(Relaxed);
        if entry::is_link(e) {
            let child = entry::group(e);
            for i in 0..GROUP {
                self.apply(Table::Group(child), i, leaf, rule);
            }
            self.collapse_if_uniform(table, index, child);
            return;
        }
        let hit = match rule {
            Rule::Insert => entry::depth1(e) <= entry::depth1(leaf),
            Rule::Remove { depth1 } => entry::depth1(e) == depth1,
        };
        if hit && e != leaf {
            slot.store(leaf, Release);
        }
    }

    fn uniform_leaf(&self, group: usize) -> Option<u32> {
        let entries = &self.tables.groups.slice()[group * GROUP..(group + 1) * GROUP];
        let first = entries[0].load(Relaxed);
        (!entry::is_link(first) && entries.iter().all(|e| e.load(Relaxed) == first))
            .then_some(first)
    }

    fn collapse_if_uniform(&mut self, table: Table, index: usize, child: usize) {
        if let Some(leaf) = self.uniform_leaf(child) {
            self.slot(table, index).store(leaf, Release);
            self.detached.push(child as u32);
        }
    }

    fn allocate_group(&mut self) -> Option<usize> {
        // Groups whose grace period is over come back before the pool grows. Otherwise a
        // writer with unused capacity would never reclaim, and every announce or withdraw
        // under churn would take fresh groups until the pool's capacity was all touched.
        if self.free.is_empty() {
            self.reclaim();
        }
        if let Some(g) = self.free.pop() {
            return Some(g as usize);
        }
        if (self.high_water as usize) < self.committed_groups() {
            self.high_water += 1;
            return Some(self.high_water as usize - 1);
        }
        None
    }
}

#[derive(Clone, Copy)]
enum Rule {
    /// Overwrite entries whose depth is ≤ the new route's.
    Insert,
    /// Replace entries of exactly the removed route's depth with its successor.
    Remove { depth1: u32 },
}
