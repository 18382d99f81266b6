//! Packet buffers: fixed-size chunks of one per-worker memory region, with headroom.
//!
//! A worker's frames all live in one page-aligned, mmap'd [`Region`] of [`CHUNK`]-byte
//! chunks (huge pages where the kernel offers them). The AF_XDP backend registers that
//! region as the UMEM of the worker's sockets, so a frame received on one AF_XDP port is
//! transmitted on another without a copy: the fast path only moves 16-byte [`Frame`]
//! handles between the pool, bursts and the backends.
//!
//! A received frame starts at least [`HEADROOM`] bytes into its chunk — where the kernel
//! puts AF_XDP receive data (its `XDP_PACKET_HEADROOM`) — so encapsulation can prepend
//! headers in place. Frames that a backend copies in (TAP, memory, pcap) start a further
//! 0–7 cache lines in, by chunk index ([`Frame::home`]): with every chunk 4 KiB apart, equal
//! offsets would put all of a burst's header lines into one L1 set (8 ways) where they evict
//! each other between stages. DPDK's mempool spreads its objects across memory channels for
//! the same kind of reason.

use std::ptr::NonNull;

/// Bytes of one buffer. A power of two, as AF_XDP's aligned chunk mode requires.
pub const CHUNK: usize = 4096;
/// Bytes kept free in front of a received frame (the kernel's XDP_PACKET_HEADROOM).
pub const HEADROOM: usize = 256;
/// The largest frame a buffer holds (MTU 2034 plus the Ethernet header).
pub const MAX_FRAME: usize = 2048;
/// Cache lines over which copied-in frames' starts are spread (see the module docs).
const STAGGER_LINES: usize = 8;
const LINE: usize = 64;
const _: () = assert!(HEADROOM + (STAGGER_LINES - 1) * LINE + MAX_FRAME <= CHUNK);

/// Where a copied-in frame's data starts in chunk number `index`.
#[inline(always)]
const fn home_of(index: usize) -> usize {
    HEADROOM + (index % STAGGER_LINES) * LINE
}

/// One packet buffer: a handle on a chunk of its pool's region. It is the only handle on
/// that chunk (frames are neither `Clone` nor `Copy`), so `&mut Frame` is exclusive access
/// to the bytes.
pub struct Frame {
    chunk: NonNull<u8>,
    head: u16,
    len: u16,
    /// Port index the frame arrived on (or leaves by, once routed).
    pub port: u16,
    /// The interface slot it arrived by: its port, or after decapsulation the tunnel's slot
    /// (ports first, then tunnels), which NAT roles are looked up by.
    pub ingress: u16,
}

// SAFETY: a frame is the sole owner of its chunk; moving it to another thread moves that
// ownership (the region outlives every frame, see `Pool`'s drop).
unsafe impl Send for Frame {}

impl Frame {
    #[inline(always)]
    fn buf_mut(&mut self) -> &mut [u8] {
        // SAFETY: `chunk` points at CHUNK bytes of a live region owned by this frame, and
        // `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.as_ptr(), CHUNK) }
    }

    // Every method that moves `head` or `len` keeps `head + len <= CHUNK` (`set_len`
    // clamps, `advance`/`prepend` move bytes between headroom and data, the rest reset), so
    // the data is sliced without a bounds check: every stage reads it several times per
    // packet.

    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        let (h, l) = (self.head as usize, self.len as usize);
        debug_assert!(h + l <= CHUNK);
        // SAFETY: the chunk holds CHUNK bytes and h + l <= CHUNK (the invariant above).
        unsafe { std::slice::from_raw_parts(self.chunk.as_ptr().add(h), l) }
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let (h, l) = (self.head as usize, self.len as usize);
        debug_assert!(h + l <= CHUNK);
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.as_ptr().add(h), l) }
    }

    /// Starts loading the cache line the frame's data begins with (Ethernet and IP
    /// headers). Frames are 4 KiB apart, so a burst's header lines compete for a few L1
    /// sets (see the module docs) and evict each other between stages.
    #[inline(always)]
    pub fn prefetch_head(&self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint and never faults; the address is inside the chunk.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                self.chunk.as_ptr().add(self.head as usize).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            )
        };
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where this frame's data starts when a backend copies it in: [`HEADROOM`] plus the
    /// chunk's stagger. Regions are 2 MiB aligned, so the address gives the chunk index.
    #[inline(always)]
    fn home(&self) -> usize {
        home_of(self.chunk.as_ptr() as usize / CHUNK)
    }

    /// Resets to an empty frame at its home offset.
    #[inline(always)]
    pub fn reset(&mut self) {
        self.head = self.home() as u16;
        self.len = 0;
    }

    /// The space after the headroom, for a backend to receive into; follow with
    /// [`Self::set_len`].
    #[inline(always)]
    pub fn rx_space(&mut self) -> &mut [u8] {
        let home = self.home();
        self.head = home as u16;
        self.len = 0;
        &mut self.buf_mut()[home..home + MAX_FRAME]
    }

    /// Sets the length of the data (clamped to the buffer).
    #[inline(always)]
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(CHUNK - self.head as usize) as u16;
    }

    /// Drops `n` bytes from the front (e.g. after decapsulation).
    pub fn advance(&mut self, n: usize) -> bool {
        if n > self.len as usize {
            return false;
        }
        self.head += n as u16;
        self.len -= n as u16;
        true
    }

    /// Grows the data by `n` bytes at the front, into the headroom; false if it does not fit.
    pub fn prepend(&mut self, n: usize) -> bool {
        if n > self.head as usize {
            return false;
        }
        self.head -= n as u16;
        self.len += n as u16;
        true
    }

    /// Replaces the content with `bytes` (slow path: building replies).
    pub fn fill(&mut self, bytes: &[u8]) -> bool {
        if bytes.len() > MAX_FRAME {
            return false;
        }
        self.rx_space()[..bytes.len()].copy_from_slice(bytes);
        self.len = bytes.len() as u16;
        true
    }
}

/// Page-aligned anonymous memory for `chunks` buffers, unmapped on drop.
pub struct Region {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory; who may touch which chunk is decided by `Frame`
// ownership.
unsafe impl Send for Region {}

impl Region {
    fn new(chunks: usize) -> std::io::Result<Region> {
        const HUGE: usize = 2 << 20;
        let len = chunks * CHUNK;
        // Map 2 MiB more than needed and keep a 2 MiB-aligned window, so transparent huge
        // pages can back all of it: every frame is in a different 4 KiB page, and with 4 KiB
        // pages the first touch of each received frame would be a TLB miss.
        let span = len + HUGE;
        // SAFETY: a fresh private anonymous mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let start = (p as usize).next_multiple_of(HUGE);
        let head = start - p as usize;
        let tail = span - head - len;
        // SAFETY: unmapping the unused ends of our own mapping; then advice and population
        // of the window we keep (advice first, so the faults take huge pages).
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            if tail > 0 {
                libc::munmap((start + len) as *mut libc::c_void, tail);
            }
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
            if libc::madvise(start as *mut libc::c_void, len, libc::MADV_POPULATE_WRITE) != 0 {
                // Older kernels: fault the pages in by hand.
                for page in (0..len).step_by(4096) {
                    std::ptr::write_volatile((start + page) as *mut u8, 0);
                }
            }
        }
        Ok(Region {
            base: NonNull::new(start as *mut u8).ok_or_else(std::io::Error::last_os_error)?,
            len,
        })
    }

    /// Start and length, for registering the region as an AF_XDP UMEM.
    pub fn raw(&self) -> (*mut u8, usize) {
        (self.base.as_ptr(), self.len)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`; `Pool` only drops a region that no
        // frame points into.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A worker's frames. Allocation and freeing are a pop and a push of a chunk index; nothing
/// touches the system allocator after construction.
pub struct Pool {
    region: Option<Region>,
    free: Vec<u32>,
    size: usize,
}

impl Pool {
    /// A pool of `size` frames. Panics only if the kernel refuses the memory at start.
    pub fn new(size: usize) -> Pool {
        Pool::try_new(size).unwrap_or_else(|e| panic!("cannot map {size} packet buffers: {e}"))
    }

    pub fn try_new(size: usize) -> std::io::Result<Pool> {
        let size = size.clamp(1, u32::MAX as usize);
        Ok(Pool {
            region: Some(Region::new(size)?),
            free: (0..size as u32).rev().collect(),
            size,
        })
    }

    fn base(&self) -> *mut u8 {
        match &self.region {
            Some(r) => r.base.as_ptr(),
            None => std::ptr::null_mut(),
        }
    }

    /// The memory the frames live in (AF_XDP registers it as its UMEM).
    pub fn region(&self) -> (*mut u8, usize) {
        self.region
            .as_ref()
            .map(Region::raw)
            .unwrap_or((std::ptr::null_mut(), 0))
    }

    #[inline(always)]
    pub fn alloc(&mut self) -> Option<Frame> {
        let index = self.free.pop()?;
        // SAFETY: `index` < size, so the chunk lies inside the region.
        let chunk = unsafe { self.base().add(index as usize * CHUNK) };
        Some(Frame {
            chunk: NonNull::new(chunk)?,
            head: home_of(index as usize) as u16,
            len: 0,
            port: 0,
            ingress: 0,
        })
    }

    /// The chunk index of a frame of this pool, or `None` for a foreign frame.
    #[inline(always)]
    fn index_of(&self, frame: &Frame) -> Option<u32> {
        let offset = (frame.chunk.as_ptr() as usize).wrapping_sub(self.base() as usize);
        (offset < self.size * CHUNK).then_some((offset / CHUNK) as u32)
    }

    #[inline(always)]
    pub fn free(&mut self, frame: Frame) {
        // A foreign frame (from another pool) is not taken: its own pool then counts it as
        // out, and keeps its region mapped (see `Drop`).
        if let Some(index) = self.index_of(&frame) {
            self.free.push(index);
        }
    }

    /// Gives a frame to the kernel (an AF_XDP fill or TX ring): its address in the region,
    /// data offset included. `None` for a foreign frame (dropped: its own pool counts it out).
    #[inline(always)]
    pub fn lend(&mut self, frame: Frame) -> Option<u64> {
        let index = self.index_of(&frame)?;
        Some(index as u64 * CHUNK as u64 + frame.head as u64)
    }

    /// Takes back a frame the kernel returned at region address `addr` with `len` bytes;
    /// `None` for an address outside the region.
    ///
    /// # Safety
    /// `addr` must have come from [`Self::lend`] on this pool, and be returned once.
    #[inline(always)]
    pub unsafe fn reclaim(&mut self, addr: u64, len: usize) -> Option<Frame> {
        let index = (addr / CHUNK as u64) as usize;
        if index >= self.size {
            return None;
        }
        let head = (addr % CHUNK as u64) as u16;
        // SAFETY: index < size, inside the region.
        let chunk = unsafe { self.base().add(index * CHUNK) };
        let mut frame = Frame {
            chunk: NonNull::new(chunk)?,
            head,
            len: 0,
            port: 0,
            ingress: 0,
        };
        frame.set_len(len);
        Some(frame)
    }

    /// Returns a lent chunk without making a frame of it (TX completions).
    ///
    /// # Safety
    /// As for [`Self::reclaim`].
    #[inline(always)]
    pub unsafe fn reclaim_free(&mut self, addr: u64) {
        let index = addr / CHUNK as u64;
        if (index as usize) < self.size {
            self.free.push(index as u32);
        }
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn size(&self) -> usize {
        self.size
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Frames still out (in a burst someone kept, or lent to the kernel) point into the
        // region: keep it mapped for the rest of the process rather than risk a dangling
        // frame. Every test and worker that returns its frames unmaps normally.
        if self.free.len() != self.size {
            std::mem::forget(self.region.take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_distinct_chunks_and_come_back() {
        let mut pool = Pool::new(8);
        let mut a = pool.alloc().expect("frame");
        let mut b = pool.alloc().expect("frame");
        a.fill(&[1; 60]);
        b.fill(&[2; 70]);
        assert_eq!(a.data(), &[1; 60][..]);
        assert_eq!(b.data(), &[2; 70][..]);
        assert!(a.prepend(HEADROOM));
        assert!(!a.prepend(1));
        assert_eq!(pool.available(), 6);
        pool.free(a);
        pool.free(b);
        assert_eq!(pool.available(), 8);
    }

    #[test]
    fn copied_in_frames_start_on_distinct_cache_lines_with_full_headroom() {
        let mut pool = Pool::new(2 * STAGGER_LINES);
        let mut frames: Vec<Frame> = (0..2 * STAGGER_LINES)
            .map(|_| pool.alloc().expect("frame"))
            .collect();
        let mut lines = std::collections::BTreeSet::new();
        for f in &mut frames {
            assert!(f.fill(&[7; MAX_FRAME]), "a full-size frame fits");
            assert_eq!(f.data(), &[7; MAX_FRAME][..]);
            assert!(f.head as usize >= HEADROOM);
            lines.insert(f.data().as_ptr() as usize % CHUNK / LINE);
            assert!(f.prepend(HEADROOM), "the whole headroom stays usable");
        }
        // 4 KiB apart, equal offsets would all share one L1 set.
        assert_eq!(lines.len(), STAGGER_LINES);
        frames.into_iter().for_each(|f| pool.free(f));
    }

    #[test]
    fn lend_and_reclaim_round_trip() {
        let mut pool = Pool::new(4);
        let mut f = pool.alloc().expect("frame");
        f.fill(b"hello world");
        assert!(f.advance(6));
        let home = f.home();
        let addr = pool.lend(f).expect("own frame");
        assert_eq!(addr % CHUNK as u64, (home + 6) as u64);
        // SAFETY: `addr` was lent just above.
        let back = unsafe { pool.reclaim(addr, 5) }.expect("in region");
        assert_eq!(back.data(), b"world");
        pool.free(back);
        // SAFETY: out of range, refused.
        assert!(unsafe { pool.reclaim(4 * CHUNK as u64, 1) }.is_none());
        assert_eq!(pool.available(), 4);
    }

    #[test]
    fn foreign_frames_are_not_adopted() {
        let mut a = Pool::new(2);
        let mut b = Pool::new(2);
        let f = a.alloc().expect("frame");
        b.free(f);
        assert_eq!(b.available(), 2);
        assert_eq!(a.available(), 1);
        // `a` drops with a frame out: its region stays mapped (no dangling frame).
    }
}
