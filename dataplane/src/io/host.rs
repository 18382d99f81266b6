//! Host interfaces: the kernel's view of tern's ports, so ordinary sockets (the BGP
//! speaker, sshd) serve tern's own addresses. This is the "linux-cp" pattern of VPP and the
//! exception path of DPDK applications.
//!
//! For each port there is a TAP device in tern's network namespace with the port's MAC,
//! MTU and addresses (so the kernel has the connected routes too). The workers write to it
//! what arrives for tern's addresses and tern does not answer itself: TCP, UDP, ICMP other
//! than echo. What the kernel sends there (its TCP segments, its ARP requests and neighbour
//! solicitations) leaves by the port as it is. Tern keeps answering ARP and NDP for its
//! addresses itself; the ARP replies and neighbour advertisements it learns from are copied
//! to the kernel too, so the kernel's own resolution of a peer completes. The kernel never
//! sees a request, so it never answers one: there is one answer on the wire, tern's.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{netdev, tap, PortTx};
use crate::pipeline::PortInfo;

/// How long the reader blocks before looking at the stop flag.
const POLL_MS: i32 = 100;

pub struct HostInterfaces {
    /// By port index.
    taps: Vec<HostTap>,
}

struct HostTap {
    name: String,
    file: File,
}

impl HostInterfaces {
    /// Creates one host interface per port, configured as the port is.
    pub fn create(ports: &[PortInfo]) -> io::Result<HostInterfaces> {
        let mut taps = Vec::with_capacity(ports.len());
        for (index, port) in ports.iter().enumerate() {
            let name = name_for(&port.name, index);
            let queue = tap::open(&name, 1, port.mtu)?
                .pop()
                .ok_or_else(|| io::Error::other("TAP device without a queue"))?;
            // Before the addresses: no duplicate address detection (tern owns the address
            // on the wire and the kernel must not hold it back), no router solicitations.
            for (knob, value) in [("accept_dad", "0"), ("router_solicitations", "0")] {
                let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/{knob}"), value);
            }
            netdev::configure(&name, port.mtu, Some(&port.mac))?;
            for (i, net) in port.v4.iter().enumerate() {
                // The classic ioctl has one IPv4 address per name: aliases carry the rest.
                let label = if i == 0 {
                    name.clone()
                } else {
                    format!("{name}:{i}")
                };
                set_v4(&label, net.addr(), net.netmask())?;
            }
            let ifindex = netdev::index(&name)?;
            for net in &port.v6 {
                add_v6(ifindex, net.addr(), net.prefix_len())?;
            }
            taps.push(HostTap {
                name,
                file: queue.into_file(),
            });
        }
        Ok(HostInterfaces { taps })
    }

    /// The host interface's name for each port.
    pub fn names(&self) -> Vec<String> {
        self.taps.iter().map(|t| t.name.clone()).collect()
    }

    /// Hands a frame that arrived on `port` to the kernel; false if there is no host
    /// interface for that port or the kernel refused it.
    pub fn deliver(&self, port: u16, frame: &[u8]) -> bool {
        self.taps
            .get(port as usize)
            .is_some_and(|t| (&t.file).write(frame).is_ok())
    }

    /// Starts the thread that sends what the kernel writes to a host interface out of its
    /// port, until `stop`.
    pub fn spawn_reader(
        self: &Arc<Self>,
        ports: Vec<Arc<dyn PortTx>>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<JoinHandle<()>> {
        let host = self.clone();
        std::thread::Builder::new()
            .name("tern-host-if".into())
            .spawn(move || host.relay(&ports, &stop))
    }

    fn relay(&self, ports: &[Arc<dyn PortTx>], stop: &AtomicBool) {
        let mut fds: Vec<libc::pollfd> = self
            .taps
            .iter()
            .map(|t| libc::pollfd {
                fd: t.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `fds` is a valid array of pollfd of the length passed.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, POLL_MS) };
            if n <= 0 {
                continue;
            }
            for (port, (pfd, tap)) in fds.iter().zip(&self.taps).enumerate() {
                if pfd.revents & libc::POLLIN == 0 {
                    continue;
                }
                // A bounded number per wakeup, so one busy interface cannot starve another.
                for _ in 0..64 {
                    match (&tap.file).read(&mut buf) {
                        Ok(len) if len > 0 => {
                            if let Some(tx) = ports.get(port) {
                                let _ = tx.send(&buf[..len]);
                            }
                        }
                        _ => break,
                    }
                }
            }
        }
    }
}

/// `h-<port>` when it fits in an interface name, else `tern-h<index>`.
fn name_for(port: &str, index: usize) -> String {
    let name = format!("h-{port}");
    if name.len() < libc::IFNAMSIZ {
        name
    } else {
        format!("tern-h{index}")
    }
}

fn socket(family: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: a plain datagram socket for address ioctls.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
struct IfReqAddr {
    name: [u8; libc::IFNAMSIZ],
    addr: libc::sockaddr_in,
    _pad: [u8; 8],
}

fn set_v4(name: &str, addr: Ipv4Addr, mask: Ipv4Addr) -> io::Result<()> {
    let sock = socket(libc::AF_INET)?;
    for (request, value) in [(libc::SIOCSIFADDR, addr), (libc::SIOCSIFNETMASK, mask)] {
        let mut req = IfReqAddr {
            name: netdev::ifname(name)?,
            addr: libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(value.octets()),
                },
                sin_zero: [0; 8],
            },
            _pad: [0; 8],
        };
        // SAFETY: SIOCSIFADDR/SIOCSIFNETMASK take a `struct ifreq` holding a sockaddr_in,
        // which `IfReqAddr` is laid out as.
        if unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req) } < 0 {
            return Err(io::Error::other(format!(
                "{name}: cannot set {addr}: {}",
                io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

/// `struct in6_ifreq` of linux/ipv6.h.
#[repr(C)]
struct In6IfReq {
    addr: [u8; 16],
    prefix_len: u32,
    ifindex: libc::c_int,
}

fn add_v6(ifindex: u32, addr: Ipv6Addr, prefix_len: u8) -> io::Result<()> {
    let sock = socket(libc::AF_INET6)?;
    let mut req = In6IfReq {
        addr: addr.octets(),
        prefix_len: prefix_len.into(),
        ifindex: ifindex as libc::c_int,
    };
    // SAFETY: SIOCSIFADDR on an AF_INET6 socket takes a `struct in6_ifreq`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &mut req) } < 0 {
        return Err(io::Error::other(format!(
            "cannot add {addr}/{prefix_len}: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}
