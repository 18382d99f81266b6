//! TAP devices: multi-queue (`IFF_MULTI_QUEUE`), no packet-information header (`IFF_NO_PI`),
//! one non-blocking queue per worker. A few lines of ioctl, since the `tun-tap` crate does
//! not open multi-queue devices.
//!
//! The device lives as long as one of its queue descriptors is open: it can be moved to
//! another network namespace (`ip link set NAME netns NS`) while tern keeps reading it, and
//! it disappears when tern exits.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use super::{netdev, PortQueue, PortTx};
use crate::buf::{Frame, Pool};

const TUNSETIFF: libc::c_ulong = 0x400454ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;

#[repr(C)]
struct IfReqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Opens `queues` queues of the TAP device `name` (creating it), sets its MTU and brings
/// it up.
pub fn open(name: &str, queues: usize, mtu: u16) -> std::io::Result<Vec<TapQueue>> {
    let mut out = Vec::with_capacity(queues);
    for _ in 0..queues {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")?;
        let mut req = IfReqFlags {
            name: netdev::ifname(name)?,
            flags: IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE,
            _pad: [0; 22],
        };
        // SAFETY: TUNSETIFF reads and writes an ifreq, which `req` is laid out as.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        out.push(TapQueue { file });
    }
    netdev::configure(name, mtu, None)?;
    Ok(out)
}

pub struct TapQueue {
    file: File,
}

impl TapQueue {
    /// A second handle on the same queue, for the control plane's occasional sends.
    /// The queue's descriptor, for users that are not a worker (host interfaces).
    pub fn into_file(self) -> File {
        self.file
    }

    pub fn sender(&self) -> std::io::Result<TapTx> {
        Ok(TapTx {
            file: self.file.try_clone()?,
        })
    }
}

impl PortQueue for TapQueue {
    fn recv_burst(&mut self, pool: &mut Pool, out: &mut Vec<Frame>, max: usize) -> usize {
        let mut n = 0;
        while n < max {
            let Some(mut frame) = pool.alloc() else { break };
            match self.file.read(frame.rx_space()) {
                Ok(len) if len > 0 => {
                    frame.set_len(len);
                    out.push(frame);
                    n += 1;
                }
                // EAGAIN (nothing more), EOF or an error: end the burst.
                _ => {
                    pool.free(frame);
                    break;
                }
            }
        }
        n
    }

    fn send_burst(&mut self, frames: &mut Vec<Frame>, pool: &mut Pool) -> usize {
        let mut sent = 0;
        for f in frames.drain(..) {
            if self.file.write(f.data()).is_ok() {
                sent += 1;
            }
            pool.free(f);
        }
        sent
    }

    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }
}

pub struct TapTx {
    file: File,
}

impl PortTx for TapTx {
    fn send(&self, frame: &[u8]) -> std::io::Result<()> {
        (&self.file).write(frame).map(drop)
    }
}
