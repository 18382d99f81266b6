//! Zeroed, page-backed arrays of atomic words for the lookup tables.
//!
//! A region reserves address space for its largest size up front (`PROT_NONE`, which costs
//! neither memory nor commit charge in any overcommit mode) and makes a prefix of it
//! readable and writable as it grows. Growing never moves the array: a reader holding its
//! address keeps reading the same entries, so a pool can grow under concurrent lookups
//! without a second copy or a republished pointer. Committed pages cost memory only once
//! touched. Regions of 2 MiB and more ask for transparent huge pages (`MADV_HUGEPAGE`),
//! which take the TLB out of the lookup's cost.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;

const HUGE_PAGE: usize = 2 << 20;
const ENTRY: usize = std::mem::size_of::<AtomicU32>();

/// A zero-initialised array of `AtomicU32` of which the first `committed` entries are
/// usable, growable up to `reserved` in place; unmapped on drop.
pub(crate) struct AtomicRegion {
    base: NonNull<AtomicU32>,
    reserved: usize,
    /// Entries readable and writable. Only the region's single writer grows it; readers
    /// never look at it (they only follow links the writer made after committing).
    committed: AtomicUsize,
    mapped_bytes: usize,
}

// SAFETY: the region is plain memory holding atomics; sharing it is what atomics are for.
unsafe impl Send for AtomicRegion {}
unsafe impl Sync for AtomicRegion {}

impl AtomicRegion {
    /// A region of `entries` entries, all usable.
    pub(crate) fn zeroed(entries: usize) -> std::io::Result<AtomicRegion> {
        let region = Self::reserve(entries)?;
        region.commit(entries)?;
        Ok(region)
    }

    /// A region with room for `entries` entries, none of them usable yet.
    pub(crate) fn reserve(entries: usize) -> std::io::Result<AtomicRegion> {
        let mapped_bytes = (entries.max(1) * ENTRY).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_bytes,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // Advisory only: where THP is off this fails harmlessly and 4 KiB pages are used.
        // SAFETY: addr..addr+mapped_bytes is the mapping just created.
        unsafe { libc::madvise(addr, mapped_bytes, libc::MADV_HUGEPAGE) };
        let base = NonNull::new(addr.cast::<AtomicU32>()).ok_or(std::io::ErrorKind::OutOfMemory)?;
        Ok(AtomicRegion {
            base,
            reserved: entries,
            committed: AtomicUsize::new(0),
            mapped_bytes,
        })
    }

    /// Makes the first `entries` entries usable (rounded up to whole huge pages, within the
    /// reservation). Fails, changing nothing, beyond the reservation or when the system
    /// refuses the memory. Called by the region's single writer.
    pub(crate) fn commit(&self, entries: usize) -> std::io::Result<()> {
        let committed = self.committed.load(Relaxed);
        if entries <= committed {
            return Ok(());
        }
        if entries > self.reserved {
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
        let from = committed * ENTRY;
        let to = (entries * ENTRY).div_ceil(HUGE_PAGE) * HUGE_PAGE;
        let to = to.min(self.mapped_bytes);
        // SAFETY: [from, to) lies inside the mapping created in `reserve` (`to` is capped at
        // its end, `from` is page-aligned: every earlier commit ended on a huge page or at
        // the end of the mapping).
        let status = unsafe {
            libc::mprotect(
                self.base.as_ptr().cast::<u8>().add(from).cast(),
                to - from,
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if status != 0 {
            return Err(std::io::Error::last_os_error());
        }
        self.committed
            .store((to / ENTRY).min(self.reserved), Relaxed);
        Ok(())
    }

    /// Entries usable now.
    pub(crate) fn committed(&self) -> usize {
        self.committed.load(Relaxed)
    }

    /// Entries the region can grow to.
    pub(crate) fn reserved(&self) -> usize {
        self.reserved
    }

    /// The usable entries.
    #[inline(always)]
    pub(crate) fn slice(&self) -> &[AtomicU32] {
        // SAFETY: the first `committed` entries are mapped readable and writable and were
        // zero-initialised by the kernel (any bit pattern is a valid AtomicU32); they stay
        // mapped as long as self.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.committed()) }
    }

    /// One entry, for a reader following a link.
    ///
    /// Readers do not load `committed` (it would cost a load per level). They reach an
    /// entry only through a link, and the writer commits a group before it fills it and
    /// publishes the link with a Release store; so every index a reader computes is
    /// committed. The bound checked here is the reservation: an index past it is a broken
    /// invariant and panics like a slice index would.
    #[inline(always)]
    pub(crate) fn linked(&self, index: usize) -> &AtomicU32 {
        assert!(index < self.reserved, "FIB link outside the group pool");
        // SAFETY: index < reserved is inside the mapping, and (see above) inside its
        // committed, zero-initialised prefix, which lives as long as self.
        unsafe { &*self.base.as_ptr().add(index) }
    }

    pub(crate) fn as_ptr(&self) -> *const AtomicU32 {
        self.base.as_ptr()
    }
}

impl Drop for AtomicRegion {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `reserve`; no borrow of it outlives
        // self.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped_bytes) };
    }
}
