//! Zeroed, page-backed arrays of atomic words for the lookup tables.
//!
//! Tables are mapped anonymously with `MAP_NORESERVE`: untouched pages cost no memory, so a
//! generous group pool is only paid for as it is used. Regions of 2 MiB and more ask for
//! transparent huge pages (`MADV_HUGEPAGE`), which take the TLB out of the lookup's cost.

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

const HUGE_PAGE: usize = 2 << 20;

/// A fixed-size zero-initialised array of `AtomicU32`, unmapped on drop.
pub(crate) struct AtomicRegion {
    base: NonNull<AtomicU32>,
    entries: usize,
    mapped_bytes: usize,
}

// SAFETY: the region is plain memory holding atomics; sharing it is what atomics are for.
unsafe impl Send for AtomicRegion {}
unsafe impl Sync for AtomicRegion {}

impl AtomicRegion {
    pub(crate) fn zeroed(entries: usize) -> std::io::Result<AtomicRegion> {
        let bytes = entries.max(1) * std::mem::size_of::<AtomicU32>();
        let mapped_bytes = bytes.div_ceil(HUGE_PAGE) * HUGE_PAGE;
        // SAFETY: an anonymous private mapping has no preconditions; the result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        if mapped_bytes >= HUGE_PAGE {
            // Advisory only: where THP is off this fails harmlessly and 4 KiB pages are used.
            // SAFETY: addr..addr+mapped_bytes is the mapping just created.
            unsafe { libc::madvise(addr, mapped_bytes, libc::MADV_HUGEPAGE) };
        }
        let base = NonNull::new(addr.cast::<AtomicU32>()).ok_or(std::io::ErrorKind::OutOfMemory)?;
        Ok(AtomicRegion {
            base,
            entries,
            mapped_bytes,
        })
    }

    #[inline(always)]
    pub(crate) fn slice(&self) -> &[AtomicU32] {
        // SAFETY: the mapping holds `entries` zero-initialised u32s (a valid AtomicU32 is any
        // bit pattern) and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.entries) }
    }

    pub(crate) fn as_ptr(&self) -> *const AtomicU32 {
        self.base.as_ptr()
    }
}

impl Drop for AtomicRegion {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `zeroed`; no borrow of it outlives self.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.mapped_bytes) };
    }
}
