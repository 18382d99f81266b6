//! Memory helpers for the big per-shard arrays: transparent huge pages and prefetch.

const HUGE_PAGE: usize = 2 << 20;

/// `n` copies of `fill` in a vector whose 2 MiB-aligned interior is advised to use
/// transparent huge pages (`MADV_HUGEPAGE`) before it is first written, so a million
/// sessions cost tens of TLB entries instead of tens of thousands. Advisory: where THP is
/// off the vector is an ordinary one.
pub fn huge_vec<T: Clone>(n: usize, fill: T) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    let bytes = n * std::mem::size_of::<T>();
    if bytes >= 2 * HUGE_PAGE {
        let start = (v.as_ptr() as usize).next_multiple_of(HUGE_PAGE);
        let end = (v.as_ptr() as usize + bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: start..end lies inside the vector's allocation (rounded inwards to
            // whole huge pages); madvise only changes how those pages are backed.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    v.resize(n, fill);
    v
}

/// Starts loading the cache line holding `*p`.
#[inline(always)]
pub fn prefetch<T>(p: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(
            (p as *const T).cast::<i8>(),
            std::arch::x86_64::_MM_HINT_T0,
        )
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
