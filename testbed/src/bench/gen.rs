//! The traffic generator: pre-built UDP/IPv4 frames sent from an AF_PACKET socket with
//! `PACKET_QDISC_BYPASS` (straight to the driver) in `sendmmsg` bursts, paced to a rate.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use dataplane::wire::{eth, ipv4, udp};

const PACKET_QDISC_BYPASS: libc::c_int = 20;
/// Frames per `sendmmsg`.
const BURST: usize = 32;

/// What to send.
pub struct Spec {
    pub ifname: String,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: Ipv4Addr,
    /// One destination per flow (flows also differ by UDP source port).
    pub destinations: Vec<Ipv4Addr>,
    /// Frame size without the 4-byte FCS, which software interfaces do not carry.
    pub frame_len: usize,
    /// Frames per second; 0 = as fast as the socket takes them.
    pub rate: u64,
    pub duration: Duration,
}

/// The UDP port the sink counts.
pub const SINK_PORT: u16 = 9;

/// An Ethernet + IPv4 + UDP frame of `len` bytes (at least 42) with valid checksums (UDP
/// checksum 0: none, which IPv4 allows).
pub fn udp_frame(spec: &Spec, dst: Ipv4Addr, sport: u16) -> Vec<u8> {
    let len = spec.frame_len.max(eth::LEN + 28);
    let mut f = vec![0u8; len];
    eth::write(&mut f, &spec.dst_mac, &spec.src_mac, eth::TYPE_IPV4);
    let ip_len = (len - eth::LEN) as u16;
    let ip = &mut f[eth::LEN..];
    ipv4::Header {
        total_len: ip_len,
        // DF: routers must not fragment the test traffic.
        flags_frag: ipv4::FLAG_DF,
        ..ipv4::Header::new(ipv4::PROTO_UDP, spec.src, dst)
    }
    .emit(ip);
    udp::write(&mut ip[ipv4::MIN_LEN..], sport, SINK_PORT, ip_len - 20);
    f
}

/// The interface's send-only packet socket, with the qdisc bypassed (straight to the driver).
fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let fd = dataplane::io::netdev::packet_socket(dataplane::io::netdev::index(ifname)?)?;
    let one: libc::c_int = 1;
    // SAFETY: an int option of the size passed.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            (&one as *const libc::c_int).cast(),
            4,
        )
    };
    Ok(fd)
}

/// Sends for `spec.duration`; returns the frames the kernel accepted.
pub fn run(spec: &Spec) -> io::Result<u64> {
    let fd = packet_socket(&spec.ifname)?;
    let flows = spec.destinations.len().max(1);
    let frames: Vec<Vec<u8>> = (0..flows)
        .map(|i| {
            let dst = spec.destinations.get(i).copied().unwrap_or(spec.src);
            udp_frame(spec, dst, 1024 + (i % 60_000) as u16)
        })
        .collect();
    let mut iov: Vec<libc::iovec> = frames
        .iter()
        .map(|f| libc::iovec {
            iov_base: f.as_ptr() as *mut libc::c_void,
            iov_len: f.len(),
        })
        .collect();
    // SAFETY: an all-zero mmsghdr is valid; the iovec pointers are set per burst.
    let mut msgs: Vec<libc::mmsghdr> = (0..BURST).map(|_| unsafe { std::mem::zeroed() }).collect();
    let start = Instant::now();
    let end = start + spec.duration;
    let mut sent: u64 = 0;
    let mut next = 0usize;
    while Instant::now() < end {
        if spec.rate > 0 {
            // Pace: burst k may leave at start + k·BURST/rate.
            let due = start + Duration::from_secs_f64(sent as f64 / spec.rate as f64);
            let now = Instant::now();
            if due > now {
                let wait = due - now;
                if wait > Duration::from_micros(200) {
                    std::thread::sleep(wait - Duration::from_micros(100));
                }
                continue;
            }
        }
        for m in msgs.iter_mut() {
            m.msg_hdr.msg_iov = &mut iov[next];
            m.msg_hdr.msg_iovlen = 1;
            next = (next + 1) % flows;
        }
        // SAFETY: `msgs` holds BURST headers pointing at live iovecs and frames.
        let n = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                BURST as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n > 0 {
            sent += n as u64;
            // Frames not taken are offered again next time round, not counted.
            next = (next + flows - (BURST - n as usize)) % flows;
        } else {
            std::hint::spin_loop();
        }
    }
    Ok(sent)
}
