//! The next-hop (adjacency) table the FIB's indices point into.
//!
//! Each slot holds a pointer to an immutable `T` (for the dataplane: egress port, MACs, an
//! ECMP member list, a tunnel). Changing a next hop swaps one pointer, so every prefix
//! using it follows at once; the old value is dropped after a QSBR grace period.
//!
//! Readers get references tied to their [`QsbrThread`] borrow: since
//! [`QsbrThread::quiescent`] takes `&mut self`, the compiler refuses a reference that would
//! live across a quiescent state.

use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::{Arc, Mutex};

use crate::qsbr::{Qsbr, QsbrThread, Retired};

struct Slots<T> {
    slots: Box<[AtomicPtr<T>]>,
    /// Values the writer retired but could not wait out when it was dropped.
    graveyard: Mutex<Vec<Box<T>>>,
}

impl<T> Drop for Slots<T> {
    fn drop(&mut self) {
        for slot in self.slots.iter() {
            let p = slot.swap(std::ptr::null_mut(), Acquire);
            if !p.is_null() {
                // SAFETY: every non-null pointer came from Box::into_raw in `set`, and with
                // the last Arc gone no reader can hold it.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

/// The writer of a next-hop table. Exactly one exists; readers hold [`NextHopView`]s.
pub struct NextHopTable<T: Send + Sync + 'static> {
    shared: Arc<Slots<T>>,
    qsbr: Arc<Qsbr>,
    retired: Retired<Box<T>>,
}

/// A worker's view of a next-hop table.
pub struct NextHopView<T> {
    shared: Arc<Slots<T>>,
}

impl<T> Clone for NextHopView<T> {
    fn clone(&self) -> Self {
        NextHopView {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> NextHopTable<T> {
    /// A table of `capacity` empty slots.
    pub fn new(qsbr: Arc<Qsbr>, capacity: u32) -> Self {
        let slots = (0..capacity)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect();
        NextHopTable {
            shared: Arc::new(Slots {
                slots,
                graveyard: Mutex::new(Vec::new()),
            }),
            qsbr,
            retired: Retired::default(),
        }
    }

    pub fn view(&self) -> NextHopView<T> {
        NextHopView {
            shared: self.shared.clone(),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.shared.slots.len() as u32
    }

    /// Publishes `value` at `index` (one pointer store); returns false if out of range.
    pub fn set(&mut self, index: u32, value: T) -> bool {
        let Some(slot) = self.shared.slots.get(index as usize) else {
            return false;
        };
        let old = slot.swap(Box::into_raw(Box::new(value)), Release);
        self.retire(old);
        true
    }

    /// Empties a slot.
    pub fn clear(&mut self, index: u32) {
        if let Some(slot) = self.shared.slots.get(index as usize) {
            let old = slot.swap(std::ptr::null_mut(), Release);
            self.retire(old);
        }
    }

    /// The current value, from the writer's side.
    pub fn get(&self, index: u32) -> Option<&T> {
        let p = self.shared.slots.get(index as usize)?.load(Acquire);
        // SAFETY: only this writer retires values, and not while `&self` is borrowed.
        unsafe { p.as_ref() }
    }

    /// Drops retired values whose grace period is over.
    pub fn reclaim(&mut self) {
        self.retired.drain_safe(self.qsbr.safe_epoch(), drop);
    }

    fn retire(&mut self, old: *mut T) {
        if !old.is_null() {
            let epoch = self.qsbr.advance();
            // SAFETY: `old` came from Box::into_raw and is no longer reachable from a slot.
            self.retired.push(epoch, unsafe { Box::from_raw(old) });
        }
        self.reclaim();
    }
}

impl<T: Send + Sync + 'static> Drop for NextHopTable<T> {
    fn drop(&mut self) {
        // Readers may still be inside a grace period: hand what is pending to the shared
        // part, which is dropped with the last reader.
        let mut graveyard = self
            .shared
            .graveyard
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.retired
            .drain_safe(u64::MAX, |value| graveyard.push(value));
    }
}

impl<T> NextHopView<T> {
    /// The value at `index`, valid until the reader's next quiescent state.
    #[inline]
    pub fn get<'g>(&self, _reader: &'g QsbrThread, index: u32) -> Option<&'g T> {
        let p = self.shared.slots.get(index as usize)?.load(Acquire);
        // SAFETY: a value is dropped only after every online reader passed a quiescent
        // state following its unlinking; `_reader` is online and borrowed for 'g, so it
        // cannot pass one while the reference lives.
        unsafe { p.as_ref() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_values_live_until_every_reader_is_quiescent() {
        let qsbr = Qsbr::new();
        let mut reader = qsbr.register();
        let mut table = NextHopTable::new(qsbr.clone(), 4);
        let view = table.view();
        let value = Arc::new(7u32);
        assert!(table.set(1, value.clone()));
        let seen = view.get(&reader, 1).map(|v| **v);
        assert_eq!(seen, Some(7));
        table.set(1, Arc::new(8));
        assert_eq!(
            Arc::strong_count(&value),
            2,
            "the replaced value waits for the reader"
        );
        reader.quiescent();
        table.reclaim();
        assert_eq!(
            Arc::strong_count(&value),
            1,
            "dropped after the grace period"
        );
        assert_eq!(view.get(&reader, 1).map(|v| **v), Some(8));
        assert!(view.get(&reader, 9).is_none());
        assert!(!table.set(9, Arc::new(1)));
    }
}
