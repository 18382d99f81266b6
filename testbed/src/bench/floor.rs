//! The I/O floor: tern's own AF_XDP code and nothing else. Frames from port A get the next
//! hop's MACs and leave by port B, zero-copy through the shared UMEM; no parsing, no
//! lookup. It idles as tern's workers do (`dataplane::idle`). What tern costs beyond this
//! is its pipeline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dataplane::buf::Pool;
use dataplane::idle::Idle;
use dataplane::io::xdp;
use dataplane::io::PortQueue;
use dataplane::wire::eth;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

pub struct Spec {
    pub a: String,
    pub b: String,
    pub mac_a: [u8; 6],
    pub mac_b: [u8; 6],
    /// The next hop's MAC on B's side.
    pub next_hop: [u8; 6],
    pub burst: usize,
}

/// Runs until SIGTERM/SIGINT; returns frames forwarded A → B.
pub fn run(spec: &Spec) -> std::io::Result<u64> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    let mut pool = Pool::try_new(4096)?;
    let mut umem = [xdp::Umem::of(&pool, 2)];
    let (mut qa, _txa, _) = xdp::open(&spec.a, 1500, &spec.mac_a, &mut umem)?;
    let (mut qb, _txb, _) = xdp::open(&spec.b, 1500, &spec.mac_b, &mut umem)?;
    let (mut a, mut b) = (qa.remove(0), qb.remove(0));
    let mut frames = Vec::with_capacity(spec.burst);
    let mut forwarded = 0u64;
    let mut idle = Idle::default();
    let mut fds: Vec<libc::pollfd> = [a.poll_fd(), b.poll_fd()]
        .into_iter()
        .flatten()
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    while !STOP.load(Ordering::Relaxed) {
        let n = a.recv_burst(&mut pool, &mut frames, spec.burst);
        for f in frames.iter_mut() {
            eth::set_addrs(f.data_mut(), &spec.next_hop, &spec.mac_b);
        }
        if n > 0 {
            forwarded += b.send_burst(&mut frames, &mut pool) as u64;
        }
        // Whatever arrives on B (the sink's ARP, say) is dropped; the call also reclaims
        // B's TX completions.
        let m = b.recv_burst(&mut pool, &mut frames, spec.burst);
        frames.drain(..).for_each(|f| pool.free(f));
        if idle.should_sleep(n + m) && !b.tx_pending() {
            // SAFETY: a valid pollfd array for the call's duration.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
        }
    }
    std::thread::sleep(Duration::from_millis(10));
    Ok(forwarded)
}
