//! Packet buffers: fixed-size frames with headroom, from a per-worker preallocated pool.
//!
//! A [`Frame`] holds one Ethernet frame at `data()`, with [`HEADROOM`] bytes in front of it so
//! encapsulation can prepend headers in place. Frames are boxed once, when the pool is
//! built; the fast path only moves the boxes between the pool, bursts and the I/O backends.

/// Bytes kept free in front of a received frame.
pub const HEADROOM: usize = 128;
/// The largest frame a buffer holds (MTU 2000 plus the Ethernet header fits).
pub const MAX_FRAME: usize = 2048;
const BUF_SIZE: usize = HEADROOM + MAX_FRAME;

pub struct Frame {
    /// Port index the frame arrived on (or leaves by, once routed).
    pub port: u16,
    head: u16,
    len: u16,
    buf: [u8; BUF_SIZE],
}

impl Frame {
    fn new() -> Box<Frame> {
        Box::new(Frame {
            port: 0,
            head: HEADROOM as u16,
            len: 0,
            buf: [0; BUF_SIZE],
        })
    }

    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buf[self.head as usize..self.head as usize + self.len as usize]
    }

    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.head as usize..self.head as usize + self.len as usize]
    }

    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Resets to an empty frame at the standard headroom.
    #[inline(always)]
    pub fn reset(&mut self) {
        self.head = HEADROOM as u16;
        self.len = 0;
    }

    /// The whole space after the headroom, for a backend to receive into; follow with
    /// [`Self::set_len`].
    #[inline(always)]
    pub fn rx_space(&mut self) -> &mut [u8] {
        self.head = HEADROOM as u16;
        &mut self.buf[HEADROOM..]
    }

    /// Sets the length of the data (clamped to the buffer).
    #[inline(always)]
    pub fn set_len(&mut self, len: usize) {
        self.len = len.min(BUF_SIZE - self.head as usize) as u16;
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
        self.reset();
        self.buf[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(bytes);
        self.len = bytes.len() as u16;
        true
    }
}

/// A worker's frames. Allocation never touches the system allocator after construction.
pub struct Pool {
    free: Vec<Box<Frame>>,
    size: usize,
}

impl Pool {
    pub fn new(size: usize) -> Pool {
        Pool {
            free: (0..size).map(|_| Frame::new()).collect(),
            size,
        }
    }

    #[inline(always)]
    pub fn alloc(&mut self) -> Option<Box<Frame>> {
        let mut f = self.free.pop()?;
        f.reset();
        Some(f)
    }

    #[inline(always)]
    pub fn free(&mut self, frame: Box<Frame>) {
        // A frame beyond the pool's size (one that came from elsewhere) is still kept: the
        // free list was allocated with capacity `size` and grows only in that case.
        self.free.push(frame);
    }

    pub fn available(&self) -> usize {
        self.free.len()
    }

    pub fn size(&self) -> usize {
        self.size
    }
}
