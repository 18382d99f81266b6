//! `lpm`: tern's forwarding information base.
//!
//! A lock-free longest-prefix-match table for IPv4 ([`Fib4`]) and IPv6 ([`Fib6`]) that maps a
//! prefix to a next-hop index (`u32`, at most [`MAX_NEXT_HOP`]) into a separate next-hop table
//! ([`NextHopTable`]). A neighbour's MAC or an ECMP member changing is one write to that table,
//! never one write per prefix.
//!
//! # Threads
//!
//! One writer ([`Fib`], owned by the control plane) and any number of readers
//! ([`FibReader`], one clone per worker). Readers are wait-free: a lookup is a bounded number
//! of `Acquire` loads with no retry loop. The structure and its publication protocol are
//! described in [`trie`]; memory the writer detaches is reused only after a quiescent-state
//! grace period ([`qsbr`]).
//!
//! The contract for readers: a thread that looks up must hold a [`QsbrThread`] of the
//! domain the FIB was built with, online, and call [`QsbrThread::quiescent`] between bursts
//! (once per poll-loop iteration). A lookup by a thread that is not registered is still
//! memory-safe — the tables are never unmapped while a reader exists — but could, in a race
//! with group reuse, return a next hop that was never right for its address.
//!
//! # Writes
//!
//! [`Fib::insert`], [`Fib::remove`] and [`Fib::apply`] (a batch) are visible to readers
//! entry by entry as they happen. A reader never sees a next hop that was not the right
//! answer for its address at some instant of the update.
//!
//! The library has no threads, no I/O and no clock of its own.

pub mod nexthop;
pub mod qsbr;
pub mod rib;
pub mod trie;

mod mem;

use std::marker::PhantomData;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{Ipv4Net, Ipv6Net};

pub use nexthop::NextHopTable;
pub use qsbr::{Qsbr, QsbrThread};
pub use trie::MAX_NEXT_HOP;
use trie::{entry, Key, Tables, Writer};

/// What a batched lookup writes for an address no route covers.
pub const NO_ROUTE: u32 = u32::MAX;

#[derive(Debug)]
pub enum FibError {
    /// The next-hop index does not fit in an entry.
    NextHopTooLarge { next_hop: u32 },
    /// The group pool is at its limit and every group is in use; the write changed
    /// nothing.
    GroupsExhausted { limit: u32 },
    /// The tables could not be mapped.
    Memory(std::io::Error),
}

impl std::fmt::Display for FibError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FibError::NextHopTooLarge { next_hop } => {
                write!(
                    f,
                    "next-hop index {next_hop} is larger than the maximum {MAX_NEXT_HOP}"
                )
            }
            FibError::GroupsExhausted { limit } => {
                write!(f, "all {limit} FIB groups (the pool's limit) are in use")
            }
            FibError::Memory(e) => write!(f, "cannot map FIB memory: {e}"),
        }
    }
}

impl std::error::Error for FibError {}

/// An address family: its address, prefix and key types.
pub trait Family: Send + Sync + 'static {
    type Addr: Copy + std::fmt::Debug + Send + Sync;
    type Net: Copy + std::fmt::Debug + Eq + Ord + Send + Sync;
    type Key: Key;
    /// How far the group pool may grow by default. Address space for all of it is
    /// reserved at creation; memory is committed as the pool grows and paid for as it is
    /// touched.
    const DEFAULT_GROUPS: u32;
    fn addr_key(addr: Self::Addr) -> Self::Key;
    /// The prefix's key with host bits cleared, and its length.
    fn net_key(net: &Self::Net) -> (Self::Key, u8);
    fn key_net(key: Self::Key, len: u8) -> Self::Net;
}

/// IPv4: DIR-24-8 (a 2²⁴-entry first level, one 256-entry level beneath).
pub enum V4 {}
/// IPv6: a 2¹⁶-entry first level and 256-entry groups per further byte.
pub enum V6 {}

impl Family for V4 {
    type Addr = Ipv4Addr;
    type Net = Ipv4Net;
    type Key = u32;
    /// One group per /24 is the most DIR-24-8 can ever use: no IPv4 table is refused.
    const DEFAULT_GROUPS: u32 = 1 << 24;
    #[inline(always)]
    fn addr_key(addr: Ipv4Addr) -> u32 {
        addr.to_bits()
    }
    fn net_key(net: &Ipv4Net) -> (u32, u8) {
        (net.network().to_bits(), net.prefix_len())
    }
    fn key_net(key: u32, len: u8) -> Ipv4Net {
        Ipv4Net::new_assert(Ipv4Addr::from_bits(key), len)
    }
}

impl Family for V6 {
    type Addr = Ipv6Addr;
    type Net = Ipv6Net;
    type Key = u128;
    /// 64 GiB of address space: over 1 000 times the groups a full 2026 table uses
    /// (RIS rrc00 IPv6, 246 175 prefixes: 49 593 groups).
    const DEFAULT_GROUPS: u32 = 1 << 26;
    #[inline(always)]
    fn addr_key(addr: Ipv6Addr) -> u128 {
        addr.to_bits()
    }
    fn net_key(net: &Ipv6Net) -> (u128, u8) {
        (net.network().to_bits(), net.prefix_len())
    }
    fn key_net(key: u128, len: u8) -> Ipv6Net {
        Ipv6Net::new_assert(Ipv6Addr::from_bits(key), len)
    }
}

/// One write of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<N> {
    /// Insert or replace.
    Upsert(N, u32),
    Remove(N),
}

/// The writer side of a FIB. Not `Clone`: there is exactly one.
pub struct Fib<F: Family> {
    writer: Writer<F::Key>,
    _family: PhantomData<F>,
}

/// A FIB's group pool (see [`Fib::group_stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStats {
    /// Linked into the tables, or detached and waiting out a grace period.
    pub in_use: usize,
    /// Ready for reuse.
    pub free: usize,
    /// Groups ever handed out: the pool's memory that has been touched.
    pub high_water: usize,
    /// Groups committed: the pool grows this on demand, in steps of 2048.
    pub capacity: usize,
    /// Groups the pool can grow to (its reserved address space).
    pub limit: usize,
}

pub type Fib4 = Fib<V4>;
pub type Fib6 = Fib<V6>;
pub type Fib4Reader = FibReader<V4>;
pub type Fib6Reader = FibReader<V6>;

impl<F: Family> Fib<F> {
    /// An empty FIB with the default group pool, reclaiming through `qsbr`.
    pub fn new(qsbr: Arc<Qsbr>) -> Result<Self, FibError> {
        Self::with_groups(qsbr, F::DEFAULT_GROUPS)
    }

    /// An empty FIB whose pool can grow to `max_groups` 256-entry groups (1 KiB each).
    pub fn with_groups(qsbr: Arc<Qsbr>, max_groups: u32) -> Result<Self, FibError> {
        Ok(Fib {
            writer: Writer::new(max_groups, qsbr)?,
            _family: PhantomData,
        })
    }

    /// A new reader handle for a worker.
    pub fn reader(&self) -> FibReader<F> {
        FibReader {
            tables: self.writer.tables().clone(),
            _family: PhantomData,
        }
    }

    /// Inserts or replaces a route; returns the next hop it replaced. Host bits of `net`
    /// are ignored.
    pub fn insert(&mut self, net: F::Net, next_hop: u32) -> Result<Option<u32>, FibError> {
        let previous = self.upsert_unpublished(net, next_hop);
        self.writer.publish();
        previous
    }

    /// Removes a route; returns its next hop, or `None` if it was not installed.
    pub fn remove(&mut self, net: F::Net) -> Result<Option<u32>, FibError> {
        let (key, len) = F::net_key(&net);
        let removed = self.writer.remove(key, len);
        self.writer.publish();
        removed
    }

    /// Applies a batch in order. Stops at the first refused change and returns its error
    /// with the number of changes applied before it.
    pub fn apply(&mut self, changes: &[Change<F::Net>]) -> Result<(), (usize, FibError)> {
        let mut result = Ok(());
        for (done, change) in changes.iter().enumerate() {
            let outcome = match *change {
                Change::Upsert(net, nh) => self.upsert_unpublished(net, nh).map(drop),
                Change::Remove(net) => {
                    let (key, len) = F::net_key(&net);
                    self.writer.remove(key, len).map(drop)
                }
            };
            if let Err(e) = outcome {
                result = Err((done, e));
                break;
            }
        }
        self.writer.publish();
        result
    }

    /// Loads a whole table into the FIB, shortest prefixes first so every entry is written
    /// once per covering prefix and never restored. Meant for an empty FIB (a cold start or
    /// a table being built before it is published), but correct on any. All or nothing: a
    /// refused route (a next hop too large, the pool at its limit or out of memory) undoes
    /// the routes loaded before it, so the FIB answers as it did before the call.
    pub fn bulk_load(
        &mut self,
        routes: impl IntoIterator<Item = (F::Net, u32)>,
    ) -> Result<(), FibError> {
        let mut routes: Vec<(F::Key, u8, u32)> = routes
            .into_iter()
            .map(|(net, nh)| {
                let (key, len) = F::net_key(&net);
                check_next_hop(nh).map(|()| (key, len, nh))
            })
            .collect::<Result<_, _>>()?;
        routes.sort_unstable_by_key(|&(key, len, _)| (len, key));
        let mut refused = None;
        for (done, route) in routes.iter_mut().enumerate() {
            let (key, len, nh) = *route;
            match self.writer.insert(key, len, nh) {
                // What it replaced takes the next hop's place, so undo can restore it.
                Ok(previous) => route.2 = previous.unwrap_or(NO_ROUTE),
                Err(e) => {
                    refused = Some((done, e));
                    break;
                }
            }
        }
        if let Some((done, _)) = refused {
            self.undo_load(&routes[..done]);
        }
        self.writer.publish();
        refused.map_or(Ok(()), |(_, e)| Err(e))
    }

    /// Reverts the inserts of a partial bulk load, newest first: each route goes back to
    /// the next hop it replaced, or away. Both draw on the groups every insert keeps in
    /// reserve for the refinement a remove may need.
    fn undo_load(&mut self, loaded: &[(F::Key, u8, u32)]) {
        for &(key, len, previous) in loaded.iter().rev() {
            let undone = if previous == NO_ROUTE {
                self.writer.remove(key, len).map(drop)
            } else {
                self.writer.restore(key, len, previous)
            };
            debug_assert!(undone.is_ok(), "undoing a bulk load: {undone:?}");
        }
    }

    /// Longest-prefix match from the writer's side.
    pub fn lookup(&self, addr: F::Addr) -> Option<u32> {
        entry::next_hop(self.writer.tables().lookup(F::addr_key(addr)))
    }

    /// The next hop installed for exactly this prefix.
    pub fn get(&self, net: &F::Net) -> Option<u32> {
        let (key, len) = F::net_key(net);
        self.writer.get(key, len)
    }

    /// Number of routes installed.
    pub fn len(&self) -> usize {
        self.writer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of lookup memory in use: the first level and every group linked or waiting
    /// out its grace period. The writer's own route copy is not counted.
    pub fn bytes(&self) -> usize {
        self.writer.bytes()
    }

    /// The pool of groups below the first level: how many are in use, free, ever used
    /// (memory touched), committed, and the limit it can grow to.
    pub fn group_stats(&self) -> GroupStats {
        self.writer.group_stats()
    }

    /// Every installed route, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (F::Net, u32)> + '_ {
        self.writer
            .iter()
            .map(|(key, len, nh)| (F::key_net(key, len), nh))
    }

    /// Returns groups whose grace period is over to the pool. Writes do this when they
    /// need groups; a control loop may call it when idle.
    pub fn reclaim(&mut self) {
        self.writer.reclaim();
    }

    fn upsert_unpublished(&mut self, net: F::Net, next_hop: u32) -> Result<Option<u32>, FibError> {
        check_next_hop(next_hop)?;
        let (key, len) = F::net_key(&net);
        self.writer.insert(key, len, next_hop)
    }
}

fn check_next_hop(next_hop: u32) -> Result<(), FibError> {
    if next_hop > MAX_NEXT_HOP {
        return Err(FibError::NextHopTooLarge { next_hop });
    }
    Ok(())
}

/// A worker's read handle. Cheap to clone; lookups are wait-free.
pub struct FibReader<F: Family> {
    tables: Arc<Tables>,
    _family: PhantomData<F>,
}

impl<F: Family> Clone for FibReader<F> {
    fn clone(&self) -> Self {
        FibReader {
            tables: self.tables.clone(),
            _family: PhantomData,
        }
    }
}

impl<F: Family> FibReader<F> {
    #[inline]
    pub fn lookup(&self, addr: F::Addr) -> Option<u32> {
        entry::next_hop(self.tables.lookup(F::addr_key(addr)))
    }

    /// Looks up every address of `addrs` into `out` ([`NO_ROUTE`] where none matches),
    /// prefetching so the misses of a batch overlap. `out` must be at least as long.
    pub fn lookup_batch(&self, addrs: &[F::Addr], out: &mut [u32]) {
        self.tables
            .lookup_batch(addrs.len(), |i| F::addr_key(addrs[i]), out, NO_ROUTE);
    }

    /// [`Self::lookup_batch`] on raw keys (host-order `u32` / `u128` addresses), for
    /// callers that already hold them.
    #[inline]
    pub fn lookup_keys(&self, keys: &[F::Key], out: &mut [u32]) {
        self.tables
            .lookup_batch(keys.len(), |i| keys[i], out, NO_ROUTE);
    }
}
