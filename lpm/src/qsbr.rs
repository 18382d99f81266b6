//! Quiescent-state-based reclamation (QSBR).
//!
//! Readers (the dataplane workers) never take a lock and never announce each read. Instead
//! each reader thread owns a [`QsbrThread`] and calls [`QsbrThread::quiescent`] once per poll
//! loop iteration, at a point where it holds no reference into any QSBR-protected structure.
//! The writer retires detached memory with the epoch returned by [`Qsbr::advance`] and may
//! reuse or free it once [`Qsbr::safe_epoch`] has reached that epoch: by then every reader
//! that was online when the memory was detached has passed a quiescent state, so none can
//! still be looking at it.
//!
//! A reader that is about to block (an idle worker sleeping in `poll`) goes
//! [`QsbrThread::offline`] so it does not stall reclamation, and comes back with
//! [`QsbrThread::online`] before its next read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Epoch value a slot holds while its thread is offline.
const OFFLINE: u64 = 0;

/// One reader's announcement, alone on its cache line so readers never share one.
#[repr(align(64))]
#[derive(Debug)]
struct Slot {
    seen: AtomicU64,
}

/// A reclamation domain: the global epoch and the registered reader threads.
#[derive(Debug)]
pub struct Qsbr {
    epoch: AtomicU64,
    slots: Mutex<Vec<Arc<Slot>>>,
}

impl Default for Qsbr {
    fn default() -> Self {
        Qsbr {
            epoch: AtomicU64::new(1),
            slots: Mutex::new(Vec::new()),
        }
    }
}

impl Qsbr {
    pub fn new() -> Arc<Qsbr> {
        Arc::new(Qsbr::default())
    }

    /// Registers the calling reader thread; it starts online.
    pub fn register(self: &Arc<Self>) -> QsbrThread {
        let slot = Arc::new(Slot {
            seen: AtomicU64::new(self.epoch.load(Ordering::Acquire)),
        });
        self.lock_slots().push(slot.clone());
        QsbrThread {
            domain: self.clone(),
            slot,
        }
    }

    /// Starts a new epoch and returns it. Memory detached (made unreachable by a Release
    /// store) before this call may be reclaimed once `safe_epoch() >= ` the returned value.
    pub fn advance(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The oldest epoch an online reader may still be reading in. With no reader online,
    /// the current epoch: everything retired so far is reclaimable.
    pub fn safe_epoch(&self) -> u64 {
        let current = self.epoch.load(Ordering::Acquire);
        self.lock_slots()
            .iter()
            .map(|slot| slot.seen.load(Ordering::Acquire))
            .filter(|&seen| seen != OFFLINE)
            .min()
            .unwrap_or(current)
    }

    /// Number of registered reader threads (online or not).
    pub fn readers(&self) -> usize {
        self.lock_slots().len()
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Slot>>> {
        // The list is only pushed to and filtered; a panic elsewhere cannot leave it torn.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A registered reader thread. Dropping it unregisters the thread.
#[derive(Debug)]
pub struct QsbrThread {
    domain: Arc<Qsbr>,
    slot: Arc<Slot>,
}

impl QsbrThread {
    /// Announces that this thread holds no reference into protected memory. Takes `&mut self`
    /// so that references handed out against `&self` (see `NextHopTable::get`) cannot live
    /// across it: the borrow checker enforces the QSBR contract.
    #[inline]
    pub fn quiescent(&mut self) {
        let epoch = self.domain.epoch.load(Ordering::Acquire);
        self.slot.seen.store(epoch, Ordering::Release);
    }

    /// Stops taking part in grace periods (before blocking). No reads until [`Self::online`].
    pub fn offline(&mut self) {
        self.slot.seen.store(OFFLINE, Ordering::Release);
    }

    /// Resumes after [`Self::offline`].
    pub fn online(&mut self) {
        self.quiescent();
    }

    pub fn domain(&self) -> &Arc<Qsbr> {
        &self.domain
    }
}

impl Drop for QsbrThread {
    fn drop(&mut self) {
        let mine = Arc::as_ptr(&self.slot);
        self.domain
            .lock_slots()
            .retain(|slot| Arc::as_ptr(slot) != mine);
    }
}

/// Writer-side list of things retired at an epoch, handed back once their grace period
/// has passed.
#[derive(Debug)]
pub(crate) struct Retired<T> {
    items: std::collections::VecDeque<(u64, T)>,
}

impl<T> Default for Retired<T> {
    fn default() -> Self {
        Retired {
            items: Default::default(),
        }
    }
}

impl<T> Retired<T> {
    pub(crate) fn push(&mut self, epoch: u64, item: T) {
        self.items.push_back((epoch, item));
    }

    /// Pops every item whose grace period is over (epochs are pushed in order).
    pub(crate) fn drain_safe(&mut self, safe_epoch: u64, mut release: impl FnMut(T)) {
        while self
            .items
            .front()
            .is_some_and(|(epoch, _)| *epoch <= safe_epoch)
        {
            if let Some((_, item)) = self.items.pop_front() {
                release(item);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_period_waits_for_every_online_reader() {
        let domain = Qsbr::new();
        let mut a = domain.register();
        let mut b = domain.register();
        let retired_at = domain.advance();
        assert!(
            domain.safe_epoch() < retired_at,
            "nobody has passed a quiescent state yet"
        );
        a.quiescent();
        assert!(
            domain.safe_epoch() < retired_at,
            "b is still online in the old epoch"
        );
        b.offline();
        assert!(domain.safe_epoch() >= retired_at, "a passed, b is offline");
        b.online();
        assert!(
            domain.safe_epoch() >= retired_at,
            "b came back in the new epoch"
        );
        drop(a);
        drop(b);
        assert_eq!(domain.readers(), 0);
        assert_eq!(domain.safe_epoch(), domain.advance() - 1);
    }
}
