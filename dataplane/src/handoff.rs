//! Handing frames between workers: what lets a NAT run on several workers.
//!
//! A frame reaches the worker whose receive queue the kernel (or the NIC) chose, but its
//! NAT session lives on one shard (`nat::Shard::steer` names it). The receiving worker
//! copies the frame into a ring toward the owner and frees its own buffer; the owner
//! copies it into one of its buffers and runs it through the pipeline from NAT
//! pre-routing on. Copying keeps each worker's pool (and AF_XDP UMEM) its own.
//!
//! Every ordered pair of workers has its own single-producer single-consumer ring of
//! fixed slots, preallocated, so a hand-off takes no lock and allocates nothing. A worker
//! that sleeps in `poll` also waits on an eventfd; a sender writes it only when the
//! receiver said it is going to sleep, so a busy pair never makes a system call.

use std::cell::UnsafeCell;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::buf::MAX_FRAME;

/// Slots per ring: a few bursts in flight between each pair of workers.
pub const RING_SLOTS: usize = 512;

/// One handed frame: where it came in, and its bytes.
struct Slot {
    port: u16,
    ingress: u16,
    len: u16,
    bytes: [u8; MAX_FRAME],
}

/// Keeps the producer's and the consumer's index on separate cache lines.
#[repr(align(128))]
struct Padded(AtomicUsize);

struct Ring {
    slots: Box<[UnsafeCell<Slot>]>,
    /// Next slot to read; written by the consumer only.
    head: Padded,
    /// Next slot to write; written by the producer only.
    tail: Padded,
}

// SAFETY: a slot is written by the one producer only while it is outside [head, tail)
// and read by the one consumer only while inside it; the Release stores of `tail` and
// `head` and the Acquire loads on the other side order those accesses.
unsafe impl Sync for Ring {}

impl Ring {
    fn new(slots: usize) -> Ring {
        Ring {
            slots: (0..slots)
                .map(|_| {
                    UnsafeCell::new(Slot {
                        port: 0,
                        ingress: 0,
                        len: 0,
                        bytes: [0; MAX_FRAME],
                    })
                })
                .collect(),
            head: Padded(AtomicUsize::new(0)),
            tail: Padded(AtomicUsize::new(0)),
        }
    }

    fn is_empty(&self) -> bool {
        self.head.0.load(Ordering::Acquire) == self.tail.0.load(Ordering::Acquire)
    }
}

/// The sending end of a ring.
pub struct Sender {
    ring: Arc<Ring>,
}

/// The receiving end of a ring.
pub struct Receiver {
    ring: Arc<Ring>,
}

/// A single-producer single-consumer ring of `slots` frames.
pub fn ring(slots: usize) -> (Sender, Receiver) {
    let ring = Arc::new(Ring::new(slots.max(1)));
    (Sender { ring: ring.clone() }, Receiver { ring })
}

impl Sender {
    /// Copies a frame into the ring; false when the ring is full (or the frame too long).
    pub fn send(&mut self, port: u16, ingress: u16, frame: &[u8]) -> bool {
        let r = &*self.ring;
        let tail = r.tail.0.load(Ordering::Relaxed);
        let head = r.head.0.load(Ordering::Acquire);
        if tail.wrapping_sub(head) >= r.slots.len() || frame.len() > MAX_FRAME {
            return false;
        }
        // SAFETY: the slot at `tail` is outside [head, tail): the consumer does not read it
        // until the Release store below publishes it.
        let slot = unsafe { &mut *r.slots[tail % r.slots.len()].get() };
        slot.port = port;
        slot.ingress = ingress;
        slot.len = frame.len() as u16;
        slot.bytes[..frame.len()].copy_from_slice(frame);
        r.tail.0.store(tail.wrapping_add(1), Ordering::Release);
        true
    }
}

impl Receiver {
    /// Hands up to `max` frames to `take(port, ingress, bytes)`, oldest first; returns how
    /// many.
    pub fn recv(&mut self, max: usize, mut take: impl FnMut(u16, u16, &[u8])) -> usize {
        let r = &*self.ring;
        let head = r.head.0.load(Ordering::Relaxed);
        let tail = r.tail.0.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(max);
        for i in 0..n {
            let at = head.wrapping_add(i);
            // SAFETY: `at` is inside [head, tail): published by the producer, which does
            // not write it again until `head` moves past it below.
            let slot = unsafe { &*r.slots[at % r.slots.len()].get() };
            take(slot.port, slot.ingress, &slot.bytes[..slot.len as usize]);
        }
        r.head.0.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }
}

/// Wakes a worker sleeping in `poll` when frames are handed to it.
pub struct Doorbell {
    fd: OwnedFd,
    asleep: AtomicBool,
}

impl Doorbell {
    pub fn new() -> std::io::Result<Doorbell> {
        // SAFETY: eventfd takes no pointers; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Doorbell {
            // SAFETY: `fd` was just opened and is owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            asleep: AtomicBool::new(false),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The sender's side, after handing frames: rings the bell if the receiver sleeps.
    pub fn ring(&self) {
        // Pairs with the fence in `going_to_sleep`: either the receiver sees our frames
        // in its rings, or we see it asleep.
        fence(Ordering::SeqCst);
        if self.asleep.swap(false, Ordering::Relaxed) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd.
            unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// The receiver's side, before `poll`: true if it may sleep (nothing was handed to it
    /// meanwhile, as `pending` says after the announcement).
    pub fn going_to_sleep(&self, pending: impl Fn() -> bool) -> bool {
        self.asleep.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if pending() {
            self.asleep.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The receiver's side, after `poll`: clears the bell.
    pub fn woke(&self) {
        self.asleep.store(false, Ordering::Relaxed);
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64; EAGAIN (not rung) is fine.
        unsafe { libc::read(self.fd(), (&mut count as *mut u64).cast(), 8) };
    }
}

/// A worker's ends of the hand-off mesh.
pub struct Handoff {
    me: usize,
    /// Toward each worker (`None` for ourselves).
    to: Vec<Option<Sender>>,
    /// From each other worker.
    from: Vec<Receiver>,
    /// Every worker's doorbell, ours included.
    bells: Arc<[Doorbell]>,
    /// Workers we handed frames to since the last `ring_bells`.
    handed: u64,
}

/// The hand-off ends of `workers` workers, by worker.
pub fn mesh(workers: usize) -> std::io::Result<Vec<Handoff>> {
    let bells: Arc<[Doorbell]> = (0..workers)
        .map(|_| Doorbell::new())
        .collect::<std::io::Result<Vec<_>>>()?
        .into();
    let mut ends: Vec<Handoff> = (0..workers)
        .map(|me| Handoff {
            me,
            to: (0..workers).map(|_| None).collect(),
            from: Vec::new(),
            bells: bells.clone(),
            handed: 0,
        })
        .collect();
    for from in 0..workers {
        for to in 0..workers {
            if from != to {
                let (tx, rx) = ring(RING_SLOTS);
                ends[from].to[to] = Some(tx);
                ends[to].from.push(rx);
            }
        }
    }
    Ok(ends)
}

impl Handoff {
    /// Copies a frame toward worker `to`; false if its ring is full.
    pub fn send(&mut self, to: usize, port: u16, ingress: u16, frame: &[u8]) -> bool {
        let Some(Some(tx)) = self.to.get_mut(to) else {
            return false;
        };
        let sent = tx.send(port, ingress, frame);
        if sent {
            self.handed |= 1 << (to % 64);
        }
        sent
    }

    /// Wakes the workers frames were handed to, if they sleep.
    pub fn ring_bells(&mut self) {
        if self.handed == 0 {
            return;
        }
        for (w, bell) in self.bells.iter().enumerate() {
            if self.handed & (1 << (w % 64)) != 0 {
                bell.ring();
            }
        }
        self.handed = 0;
    }

    /// Hands up to `max` frames from the other workers to `take(port, ingress, bytes)`.
    pub fn recv(&mut self, max: usize, mut take: impl FnMut(u16, u16, &[u8])) -> usize {
        let mut n = 0;
        for rx in &mut self.from {
            n += rx.recv(max - n, &mut take);
            if n == max {
                break;
            }
        }
        n
    }

    pub fn doorbell(&self) -> &Doorbell {
        &self.bells[self.me]
    }

    /// Whether any frame waits for us.
    pub fn pending(&self) -> bool {
        self.from.iter().any(|rx| !rx.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_cross_in_order_and_intact_between_threads() {
        let (mut tx, mut rx) = ring(8);
        const N: u32 = 50_000;
        let producer = std::thread::spawn(move || {
            let mut i = 0u32;
            let mut frame = [0u8; 100];
            while i < N {
                let len = 4 + (i as usize % 90);
                frame[..4].copy_from_slice(&i.to_be_bytes());
                frame[4..len].fill(i as u8);
                if tx.send(i as u16, 7, &frame[..len]) {
                    i += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut next = 0u32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while next < N && std::time::Instant::now() < deadline {
            let got = rx.recv(4, |port, ingress, bytes| {
                let i = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                assert_eq!(i, next, "in order");
                assert_eq!((port, ingress), (i as u16, 7));
                assert_eq!(bytes.len(), 4 + (i as usize % 90));
                assert!(bytes[4..].iter().all(|&b| b == i as u8), "intact");
                next += 1;
            });
            if got == 0 {
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(next, N);
    }

    #[test]
    fn a_full_ring_refuses_and_a_drained_one_accepts_again() {
        let (mut tx, mut rx) = ring(2);
        assert!(tx.send(0, 0, &[1]));
        assert!(tx.send(0, 0, &[2]));
        assert!(!tx.send(0, 0, &[3]), "full");
        assert!(!tx.send(0, 0, &[0; MAX_FRAME + 1]), "too long");
        let mut seen = Vec::new();
        assert_eq!(rx.recv(8, |_, _, b| seen.push(b[0])), 2);
        assert_eq!(seen, [1, 2]);
        assert!(rx.is_empty());
        assert!(tx.send(0, 0, &[3]));
    }

    #[test]
    fn the_bell_rings_only_for_a_sleeper() {
        let mut ends = mesh(2).unwrap();
        let (a, b) = ends.split_at_mut(1);
        let (a, b) = (&mut a[0], &mut b[0]);
        // Awake: handing frames writes nothing to the eventfd.
        assert!(a.send(1, 0, 0, &[9]));
        a.ring_bells();
        let mut fd = libc::pollfd {
            fd: b.doorbell().fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut fd, 1, 0) }, 0);
        // Frames pending: b may not sleep.
        assert!(!b.doorbell().going_to_sleep(|| b.pending()));
        assert_eq!(b.recv(8, |_, _, _| {}), 1);
        // Asleep: the next hand-off rings.
        assert!(b.doorbell().going_to_sleep(|| b.pending()));
        assert!(a.send(1, 0, 0, &[9]));
        a.ring_bells();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut fd, 1, 0) }, 1);
        b.doorbell().woke();
        // SAFETY: as above.
        assert_eq!(unsafe { libc::poll(&mut fd, 1, 0) }, 0);
    }
}
