//! Kernel interface settings through the classic `ioctl`s: index, MTU, MAC, UP flag. Shared
//! by the TAP backend (tern creates the device) and AF_XDP (tern adopts an existing one).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::wire::Mac;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    /// The `ifr_ifru` union: flags, an int, or a `sockaddr` (MAC).
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<IfReq> {
        Ok(IfReq {
            name: ifname(name)?,
            data: [0; 24],
        })
    }
}

/// The name as `ifr_name` wants it: NUL-terminated, at most 15 bytes.
pub fn ifname(name: &str) -> io::Result<[u8; libc::IFNAMSIZ]> {
    let mut n = [0u8; libc::IFNAMSIZ];
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    n[..name.len()].copy_from_slice(name.as_bytes());
    Ok(n)
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: a plain datagram socket for interface ioctls.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ioctl(sock: &OwnedFd, request: libc::c_ulong, req: &mut IfReq) -> io::Result<()> {
    // SAFETY: every request used here takes a `struct ifreq`, which `IfReq` is laid out as.
    if unsafe { libc::ioctl(sock.as_raw_fd(), request, req as *mut IfReq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The interface index of `name`.
pub fn index(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name} in this network namespace"),
        )),
        i => Ok(i),
    }
}

fn set_flag_up(sock: &OwnedFd, name: &str, up: bool) -> io::Result<()> {
    let mut req = IfReq::new(name)?;
    ioctl(sock, libc::SIOCGIFFLAGS, &mut req)?;
    let mut flags = i16::from_ne_bytes([req.data[0], req.data[1]]);
    if up {
        flags |= libc::IFF_UP as i16;
    } else {
        flags &= !(libc::IFF_UP as i16);
    }
    req.data[..2].copy_from_slice(&flags.to_ne_bytes());
    ioctl(sock, libc::SIOCSIFFLAGS, &mut req)
}

/// Sets the MTU (and the MAC, if given: the device is taken down for it, since not every
/// driver changes a live address) and brings the interface up.
pub fn configure(name: &str, mtu: u16, mac: Option<&Mac>) -> io::Result<()> {
    let sock = control_socket()?;
    if let Some(mac) = mac {
        let mut req = IfReq::new(name)?;
        ioctl(&sock, libc::SIOCGIFHWADDR, &mut req)?;
        // sockaddr: sa_family (2 bytes), then the address.
        if &req.data[2..8] != mac {
            set_flag_up(&sock, name, false)?;
            req.data[..2].copy_from_slice(&(libc::ARPHRD_ETHER).to_ne_bytes());
            req.data[2..8].copy_from_slice(mac);
            ioctl(&sock, libc::SIOCSIFHWADDR, &mut req)?;
        }
    }
    let mut req = IfReq::new(name)?;
    req.data[..4].copy_from_slice(&(mtu as i32).to_ne_bytes());
    ioctl(&sock, libc::SIOCSIFMTU, &mut req)?;
    set_flag_up(&sock, name, true)
}

/// The number of receive queues the device has (from sysfs; 1 if it does not say).
pub fn rx_queues(name: &str) -> usize {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// A send-only packet socket bound to interface `ifindex` (protocol 0: nothing received is
/// ever queued on it). Frames written to it go straight to the device.
pub fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: a new socket, owned below.
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the descriptor just created.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: a sockaddr_ll of the size passed.
    let r = unsafe {
        libc::bind(
            raw,
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Whether interface `name`'s link is up, as far as this namespace can tell: its
/// `operstate` is not `down`/`lowerlayerdown`. A device not visible here (a TAP moved into
/// a host's namespace, a memory port) counts as up: tern holds its other end.
pub fn link_up(name: &str) -> bool {
    match std::fs::read_to_string(format!("/sys/class/net/{name}/operstate")) {
        Ok(state) => !matches!(state.trim(), "down" | "lowerlayerdown" | "notpresent"),
        Err(_) => true,
    }
}
