//! AF_XDP: frames move between the NIC (or veth) and tern through rings shared with the
//! kernel, in bursts, with no system call per frame.
//!
//! * Per interface ([`open`]): an XSKMAP and the redirect program of [`bpf`], attached
//!   natively when the driver can (generic mode otherwise), through a BPF link that dies
//!   with tern; one AF_XDP socket per worker, bound to rx queue = worker index. The
//!   interface must have exactly one rx queue per worker (checked at start).
//! * Per worker: its [`Pool`]'s region is the UMEM of all its sockets (the first one
//!   registers it, the others join with `XDP_SHARED_UMEM` and their own fill and completion
//!   rings), so a frame received on one port leaves by another with no copy in tern.
//!   Zero-copy binding is tried first; veth and other drivers without it get copy mode,
//!   where the kernel copies between its buffers and the UMEM.
//! * `XDP_USE_NEED_WAKEUP`: the worker sleeps in `poll(2)` on the socket when idle and only
//!   makes the wakeup system calls the kernel asks for. In copy mode every TX needs a
//!   `sendto` kick, and one kick sends at most the kernel's TX budget (32 frames unless
//!   `XDP_MAX_TX_SKB_BUDGET` raised it), so [`XdpQueue`] kicks until the ring drains.
//!
//! The program takes every frame of a bound queue, ARP and NDP included: tern answers them
//! itself, as on TAP. The control plane's own frames leave through a packet socket
//! ([`XdpTx`]), not through a worker's rings.

pub mod bpf;
pub mod ring;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::bpf::{Program, XskMap, XDP_FLAGS_DRV_MODE, XDP_FLAGS_SKB_MODE};
use self::ring::{Desc, Ring, RingOffset};
use super::{netdev, PortQueue, PortTx};
use crate::buf::{Frame, Pool, CHUNK};
use crate::wire::Mac;

const AF_XDP: libc::c_int = 44;
const SOL_XDP: libc::c_int = 283;

const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_RX_RING: libc::c_int = 2;
const XDP_TX_RING: libc::c_int = 3;
const XDP_UMEM_REG: libc::c_int = 4;
const XDP_UMEM_FILL_RING: libc::c_int = 5;
const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
const XDP_STATISTICS: libc::c_int = 7;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

const XDP_SHARED_UMEM: u16 = 1 << 0;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;

const XDP_PGOFF_RX_RING: u64 = 0;
const XDP_PGOFF_TX_RING: u64 = 0x8000_0000;
const XDP_UMEM_PGOFF_FILL_RING: u64 = 0x1_0000_0000;
const XDP_UMEM_PGOFF_COMPLETION_RING: u64 = 0x1_8000_0000;

/// Entries of each ring. Powers of two.
const RING: u32 = 2048;
/// TX frames the kernel takes per copy-mode kick when it lets us choose (its default is 32).
const TX_BUDGET: u32 = 256;

#[repr(C)]
struct UmemReg {
    addr: u64,
    len: u64,
    chunk_size: u32,
    headroom: u32,
    flags: u32,
    tx_metadata_len: u32,
}

#[repr(C)]
struct SockaddrXdp {
    family: u16,
    flags: u16,
    ifindex: u32,
    queue_id: u32,
    shared_umem_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct MmapOffsets {
    rx: RingOffset,
    tx: RingOffset,
    fr: RingOffset,
    cr: RingOffset,
}

/// `struct xdp_statistics`: the kernel's per-socket drop counters.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct Statistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live `T` of the size passed; the kernel copies it in.
    let r = unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn getsockopt<T: Default>(fd: RawFd, name: libc::c_int) -> io::Result<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is writable for `len` bytes; the kernel writes at most that.
    let r = unsafe { libc::getsockopt(fd, SOL_XDP, name, (&mut value as *mut T).cast(), &mut len) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// The UMEM a worker's sockets share: its pool's region, and the socket that registered it
/// once there is one.
#[derive(Clone, Copy)]
pub struct Umem {
    pub base: *mut u8,
    pub len: usize,
    pub owner: Option<RawFd>,
    /// Frames to keep in each socket's fill ring.
    pub fill: u32,
}

impl Umem {
    pub fn of(pool: &Pool, sockets: usize) -> Umem {
        let (base, len) = pool.region();
        let fill = (pool.size() / (2 * sockets.max(1))).clamp(64, RING as usize) as u32;
        Umem {
            base,
            len,
            owner: None,
            fill,
        }
    }
}

/// The program and map of one interface; detached when the last queue goes.
struct Attachment {
    map: XskMap,
    _program: Program,
    _link: OwnedFd,
}

/// How an interface ended up attached, for the log and `show interfaces`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode {
    pub native: bool,
    pub zero_copy: bool,
}

/// Adopts interface `name` for AF_XDP: sets its MTU and MAC, brings it up, loads and
/// attaches the program, and binds one socket per worker (rx queue `w` for worker `w`,
/// UMEM `umems[w]`, whose `owner` is filled in by the first socket of each worker).
pub fn open(
    name: &str,
    mtu: u16,
    mac: &Mac,
    umems: &mut [Umem],
) -> io::Result<(Vec<XdpQueue>, XdpTx, Mode)> {
    let ifindex = netdev::index(name)?;
    let workers = umems.len();
    // Worker w binds rx queue w, so the queues must be exactly the workers: a frame the
    // device steers to a queue nobody binds would go to the kernel stack and be lost.
    let queues = netdev::rx_queues(name);
    if queues != workers {
        return Err(io::Error::other(format!(
            "{name} has {queues} rx queue(s) and tern runs {workers} worker(s): each queue \
             needs its worker (a frame steered to a queue without one would be lost); set \
             dataplane.workers = {queues}, or give {name} {workers} queue(s) \
             (a NIC: `ethtool -L {name} combined {workers}`; veth: \
             `ip link add … numrxqueues {workers} numtxqueues {workers}`)"
        )));
    }
    // The kernel stack keeps no say on an adopted port: no IPv6 autoconfiguration or
    // router solicitations going out of it behind tern's back.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    netdev::configure(name, mtu, Some(mac))?;
    let map = XskMap::new(name, workers as u32)?;
    let program = Program::redirect(&map)?;
    let mut sockets = Vec::with_capacity(workers);
    let mut zero_copy = false;
    for (w, umem) in umems.iter_mut().enumerate() {
        let (socket, zc) = XdpQueue::bind(ifindex, w as u32, *umem)?;
        map.insert(w as u32, socket.fd.as_raw_fd())?;
        umem.owner.get_or_insert(socket.fd.as_raw_fd());
        zero_copy |= zc;
        sockets.push(socket);
    }
    let (link, native) = match program.attach(ifindex, XDP_FLAGS_DRV_MODE) {
        Ok(link) => (link, true),
        Err(native) => {
            let link = program.attach(ifindex, XDP_FLAGS_SKB_MODE).map_err(|e| {
                io::Error::other(format!("attach XDP: native: {native}; generic: {e}"))
            })?;
            (link, false)
        }
    };
    let attachment = Arc::new(Attachment {
        map,
        _program: program,
        _link: link,
    });
    for s in &mut sockets {
        s.attachment = Some(attachment.clone());
    }
    let mode = Mode { native, zero_copy };
    // The control plane reads the sockets' statistics through duplicates of them.
    let stats = sockets
        .iter()
        .map(|s| s.fd.try_clone())
        .collect::<io::Result<Vec<_>>>()?;
    Ok((sockets, XdpTx::open(ifindex, stats, mode)?, mode))
}

/// One worker's AF_XDP socket on one interface.
pub struct XdpQueue {
    fd: OwnedFd,
    queue: u32,
    rx: Ring<Desc>,
    tx: Ring<Desc>,
    fill: Ring<u64>,
    completion: Ring<u64>,
    fill_target: u32,
    attachment: Option<Arc<Attachment>>,
}

impl XdpQueue {
    /// Creates, sets up and binds the socket (zero-copy first, then copy mode; retried for
    /// a while on EBUSY, which a queue released by a process that just exited returns).
    fn bind(ifindex: u32, queue: u32, umem: Umem) -> io::Result<(XdpQueue, bool)> {
        // SAFETY: a new socket; owned below.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor just created.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if umem.owner.is_none() {
            let reg = UmemReg {
                addr: umem.base as u64,
                len: umem.len as u64,
                chunk_size: CHUNK as u32,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(raw, XDP_UMEM_REG, &reg)?;
        }
        for ring in [
            XDP_RX_RING,
            XDP_TX_RING,
            XDP_UMEM_FILL_RING,
            XDP_UMEM_COMPLETION_RING,
        ] {
            setsockopt(raw, ring, &RING)?;
        }
        let _ = setsockopt(raw, XDP_MAX_TX_SKB_BUDGET, &TX_BUDGET);
        let off: MmapOffsets = getsockopt(raw, XDP_MMAP_OFFSETS)?;
        let rx = Ring::map(raw, &off.rx, RING, XDP_PGOFF_RX_RING)?;
        let tx = Ring::map(raw, &off.tx, RING, XDP_PGOFF_TX_RING)?;
        let fill = Ring::map(raw, &off.fr, RING, XDP_UMEM_PGOFF_FILL_RING)?;
        let completion = Ring::map(raw, &off.cr, RING, XDP_UMEM_PGOFF_COMPLETION_RING)?;
        let attempts: &[u16] = match umem.owner {
            // A socket joining a UMEM inherits the owner's mode and may not name one.
            Some(_) => &[XDP_SHARED_UMEM],
            None => &[
                XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP,
                XDP_COPY | XDP_USE_NEED_WAKEUP,
            ],
        };
        let mut last = io::Error::other("no bind attempted");
        for &flags in attempts {
            let addr = SockaddrXdp {
                family: AF_XDP as u16,
                flags,
                ifindex,
                queue_id: queue,
                shared_umem_fd: umem.owner.unwrap_or(0) as u32,
            };
            match bind_retrying(raw, &addr) {
                Ok(()) => {
                    let zc = getsockopt::<u32>(raw, XDP_OPTIONS)
                        .is_ok_and(|o| o & XDP_OPTIONS_ZEROCOPY != 0);
                    let socket = XdpQueue {
                        fd,
                        queue,
                        rx,
                        tx,
                        fill,
                        completion,
                        fill_target: umem.fill.min(RING),
                        attachment: None,
                    };
                    return Ok((socket, zc));
                }
                Err(e) => last = e,
            }
        }
        Err(io::Error::new(
            last.kind(),
            format!("bind AF_XDP socket to queue {queue}: {last}"),
        ))
    }

    /// Tops the fill ring up to its target with frames from the pool.
    fn refill(&mut self, pool: &mut Pool) {
        let queued = self.fill.outstanding();
        if queued >= self.fill_target {
            return;
        }
        let want = (self.fill_target - queued).min(self.fill.free_slots(self.fill_target - queued));
        let mut pushed = 0;
        for _ in 0..want {
            let Some(frame) = pool.alloc() else { break };
            match pool.lend(frame) {
                Some(addr) => {
                    self.fill.push(addr);
                    pushed += 1;
                }
                None => break,
            }
        }
        if pushed > 0 {
            self.fill.submit();
        }
    }

    /// Takes back the frames the kernel finished sending.
    fn complete(&mut self, pool: &mut Pool) {
        let n = self.completion.ready();
        for _ in 0..n {
            let addr = self.completion.pop();
            // SAFETY: the kernel returns the addresses of descriptors we lent, once.
            unsafe { pool.reclaim_free(addr) };
        }
        if n > 0 {
            self.completion.release();
        }
    }

    /// The TX wakeup: an empty `sendto` makes the kernel (copy mode) send from the ring.
    fn wake_tx(&self) -> io::Result<()> {
        // SAFETY: an empty, non-blocking send on our socket.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The RX wakeup: an empty `recvfrom` makes a zero-copy driver look at the fill ring.
    fn wake_rx(&self) {
        // SAFETY: an empty, non-blocking receive on our socket; the result does not matter.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    /// Makes the kernel send what the TX ring holds. A copy-mode kick sends one budget of
    /// frames, so kick until the ring drains, a bounded number of times.
    fn kick(&mut self) {
        if !self.tx.needs_wakeup() {
            return;
        }
        let mut kicks = self.tx.outstanding() / 32 + 2;
        while kicks > 0 && self.tx.outstanding() > 0 {
            kicks -= 1;
            if let Err(e) = self.wake_tx() {
                match e.raw_os_error() {
                    // More to send, or the kernel is short of buffers for a moment.
                    Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) => {}
                    _ => break,
                }
            }
        }
    }
}

/// Retries `bind` on EBUSY for up to two seconds: the kernel releases a queue a moment after
/// its previous socket (another process's, or one of ours being replaced) closed.
fn bind_retrying(fd: RawFd, addr: &SockaddrXdp) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut pause = Duration::from_millis(10);
    loop {
        // SAFETY: `addr` is a sockaddr_xdp of the size passed.
        let r = unsafe {
            libc::bind(
                fd,
                (addr as *const SockaddrXdp).cast(),
                std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBUSY) || Instant::now() > deadline {
            return Err(e);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

impl PortQueue for XdpQueue {
    fn recv_burst(&mut self, pool: &mut Pool, out: &mut Vec<Frame>, max: usize) -> usize {
        self.complete(pool);
        // Frames a kick could not send (the peer's queue was full, the kernel short of
        // buffers) wait in the TX ring: every poll tries again, so none is stranded when
        // no new frame comes to push it.
        if self.tx.outstanding() > 0 {
            self.kick();
        }
        self.refill(pool);
        let n = self.rx.ready().min(max as u32);
        for _ in 0..n {
            let d = self.rx.pop();
            // SAFETY: the kernel hands back, once, addresses we lent through the fill ring.
            if let Some(frame) = unsafe { pool.reclaim(d.addr, d.len as usize) } {
                out.push(frame);
            }
        }
        if n > 0 {
            self.rx.release();
        } else if self.fill.needs_wakeup() {
            // A zero-copy driver waits for this before it uses the refilled ring.
            self.wake_rx();
        }
        n as usize
    }

    fn send_burst(&mut self, frames: &mut Vec<Frame>, pool: &mut Pool) -> usize {
        self.complete(pool);
        let mut room = self.tx.free_slots(frames.len() as u32);
        let mut sent = 0;
        for frame in frames.drain(..) {
            if room == 0 {
                pool.free(frame);
                continue;
            }
            let len = frame.len() as u32;
            if let Some(addr) = pool.lend(frame) {
                self.tx.push(Desc {
                    addr,
                    len,
                    options: 0,
                });
                room -= 1;
                sent += 1;
            }
        }
        if sent > 0 {
            self.tx.submit();
            self.kick();
        }
        sent
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn tx_pending(&self) -> bool {
        self.tx.outstanding() > 0
    }
}

impl Drop for XdpQueue {
    fn drop(&mut self) {
        if let Some(a) = &self.attachment {
            let _ = a.map.remove(self.queue);
        }
    }
}

/// The control plane's way out of an AF_XDP port: a packet socket on the interface (frames
/// it sends do not pass the XDP program, which only sees received frames). It also reads
/// the workers' sockets' statistics.
pub struct XdpTx {
    fd: OwnedFd,
    sockets: Vec<OwnedFd>,
    mode: Mode,
}

impl XdpTx {
    fn open(ifindex: u32, sockets: Vec<OwnedFd>, mode: Mode) -> io::Result<XdpTx> {
        let fd = netdev::packet_socket(ifindex)?;
        Ok(XdpTx { fd, sockets, mode })
    }

    /// The kernel's drop counters, summed over the workers' sockets.
    pub fn statistics(&self) -> Statistics {
        let mut sum = Statistics::default();
        for fd in &self.sockets {
            if let Ok(s) = getsockopt::<Statistics>(fd.as_raw_fd(), XDP_STATISTICS) {
                sum.rx_dropped += s.rx_dropped;
                sum.rx_invalid_descs += s.rx_invalid_descs;
                sum.tx_invalid_descs += s.tx_invalid_descs;
                sum.rx_ring_full += s.rx_ring_full;
                sum.rx_fill_ring_empty_descs += s.rx_fill_ring_empty_descs;
                sum.tx_ring_empty_descs += s.tx_ring_empty_descs;
            }
        }
        sum
    }
}

impl PortTx for XdpTx {
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: sending `frame`'s bytes on our bound socket.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn status(&self) -> serde_json::Value {
        let s = self.statistics();
        serde_json::json!({
            "xdp": if self.mode.native { "native" } else { "generic" },
            "af_xdp": if self.mode.zero_copy { "zero-copy" } else { "copy" },
            "sockets": self.sockets.len(),
            "rx_dropped": s.rx_dropped,
            "rx_ring_full": s.rx_ring_full,
            "rx_fill_ring_empty": s.rx_fill_ring_empty_descs,
            "rx_invalid": s.rx_invalid_descs,
            "tx_invalid": s.tx_invalid_descs,
            "tx_ring_empty": s.tx_ring_empty_descs,
        })
    }
}
