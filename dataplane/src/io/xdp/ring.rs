//! The four AF_XDP rings, mapped from the socket: single-producer single-consumer queues
//! shared with the kernel. For each ring one side produces and the other consumes; the
//! index words are free-running u32 counters, masked by the power-of-two size.
//!
//! Ordering: a producer writes entries, then publishes them with a Release store of the
//! producer index; a consumer reads the producer index with Acquire before reading entries,
//! then hands the slots back with a Release store of the consumer index. That is the
//! protocol of the kernel side (`xsk_queue.h`), with the barriers it expects.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};

/// `struct xdp_desc`: a frame in the UMEM (address with data offset, length).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// `struct xdp_ring_offset`: where the index words and entries sit in the mapping.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `XDP_RING_NEED_WAKEUP`: the kernel wants a syscall before it looks at the ring again.
const NEED_WAKEUP: u32 = 1;

/// One mapped ring of entries of type `T` (`Desc` for rx/tx, `u64` for fill/completion).
pub struct Ring<T> {
    map: *mut libc::c_void,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    mask: u32,
    /// Our copy of the index we own (producer for fill/tx, consumer for rx/completion).
    local: u32,
    /// Last value seen of the other side's index.
    cached: u32,
}

// SAFETY: the ring belongs to one socket used by one thread; moving it moves that.
unsafe impl<T> Send for Ring<T> {}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `size` entries at page offset `pgoff` of socket `fd`.
    pub fn map(fd: RawFd, off: &RingOffset, size: u32, pgoff: u64) -> io::Result<Ring<T>> {
        let map_len = off.desc as usize + size as usize * std::mem::size_of::<T>();
        // SAFETY: mapping the ring the kernel created for this socket with this size.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let at = |o: u64| map.cast::<u8>().wrapping_add(o as usize);
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this mapping.
        let ring = Ring {
            map,
            map_len,
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            entries: at(off.desc).cast(),
            mask: size - 1,
            local: 0,
            cached: 0,
        };
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into the live mapping, at a u32 the kernel also updates atomically.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    pub fn size(&self) -> u32 {
        self.mask + 1
    }

    /// Whether the kernel asked for a wakeup syscall.
    pub fn needs_wakeup(&self) -> bool {
        // SAFETY: as for `producer`.
        unsafe { &*self.flags }.load(Ordering::Relaxed) & NEED_WAKEUP != 0
    }

    // ---- producer side (fill, tx) ----

    /// Free slots, refreshing the view of the consumer only when the cache says none.
    pub fn free_slots(&mut self, want: u32) -> u32 {
        let free = self.size() - self.local.wrapping_sub(self.cached);
        if free >= want {
            return free;
        }
        self.cached = self.consumer().load(Ordering::Acquire);
        self.size() - self.local.wrapping_sub(self.cached)
    }

    /// Writes one entry; the caller checked [`Self::free_slots`]. Seen by the kernel at the
    /// next [`Self::submit`].
    pub fn push(&mut self, entry: T) {
        let slot = (self.local & self.mask) as usize;
        // SAFETY: slot < size, inside the mapping; the slot is ours (checked free).
        unsafe { self.entries.add(slot).write(entry) };
        self.local = self.local.wrapping_add(1);
    }

    /// Publishes the entries pushed so far.
    pub fn submit(&mut self) {
        self.producer().store(self.local, Ordering::Release);
    }

    /// Entries published but not yet taken by the kernel.
    pub fn outstanding(&self) -> u32 {
        self.local
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    // ---- consumer side (rx, completion) ----

    /// Entries ready to read.
    pub fn ready(&mut self) -> u32 {
        let mut n = self.cached.wrapping_sub(self.local);
        if n == 0 {
            self.cached = self.producer().load(Ordering::Acquire);
            n = self.cached.wrapping_sub(self.local);
        }
        n
    }

    /// Reads the next entry; the caller checked [`Self::ready`].
    pub fn pop(&mut self) -> T {
        let slot = (self.local & self.mask) as usize;
        // SAFETY: slot < size; the entry was published by the kernel (Acquire in `ready`).
        let entry = unsafe { self.entries.add(slot).read() };
        self.local = self.local.wrapping_add(1);
        entry
    }

    /// Hands the read slots back to the kernel.
    pub fn release(&mut self) {
        self.consumer().store(self.local, Ordering::Release);
    }
}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference into it outlives the ring.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}
