//! The XDP side of AF_XDP with raw `bpf(2)` calls: no BPF toolchain, no libbpf.
//!
//! Per interface: one XSKMAP (rx queue index → AF_XDP socket) and one five-instruction
//! program, hand-assembled below, that redirects every frame to the socket of its rx queue
//! and passes it to the kernel stack when that queue has none. The program is attached with
//! `BPF_LINK_CREATE`: the link is a file descriptor, so the program detaches when tern's
//! last reference goes, also when tern crashes or is killed.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

/// `XDP_FLAGS_SKB_MODE`: generic XDP, after the kernel built an skb (works everywhere).
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
/// `XDP_FLAGS_DRV_MODE`: native XDP in the driver's receive path.
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// The size the kernel accepts for every command we use (`union bpf_attr` is larger, but
/// trailing zeroes are checked, so a zeroed prefix of this size is the portable form).
const ATTR_SIZE: usize = 128;

#[repr(C, align(8))]
struct Attr([u8; ATTR_SIZE]);

impl Attr {
    fn new() -> Attr {
        Attr([0; ATTR_SIZE])
    }
    fn u32(&mut self, offset: usize, v: u32) -> &mut Attr {
        self.0[offset..offset + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, offset: usize, v: u64) -> &mut Attr {
        self.0[offset..offset + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, offset: usize, name: &str) -> &mut Attr {
        let n = name.len().min(15);
        self.0[offset..offset + n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a zero-initialised bpf_attr prefix of ATTR_SIZE bytes, laid out
    // for `cmd` by the caller; the kernel reads at most that many bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_mut_ptr(), ATTR_SIZE as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: `fd` is a descriptor the kernel just returned to us and no one else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// An XSKMAP: key = rx queue index, value = AF_XDP socket descriptor.
pub struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    pub fn new(name: &str, queues: u32) -> io::Result<XskMap> {
        let mut a = Attr::new();
        // map_type, key_size, value_size, max_entries; map_name at 28.
        a.u32(0, BPF_MAP_TYPE_XSKMAP)
            .u32(4, 4)
            .u32(8, 4)
            .u32(12, queues.max(1))
            .name(28, name);
        Ok(XskMap {
            fd: owned(bpf(BPF_MAP_CREATE, &mut a)?),
        })
    }

    /// Steers rx queue `queue` to the socket `xsk`.
    pub fn insert(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk as u32;
        let mut a = Attr::new();
        // map_fd, key pointer at 8, value pointer at 16, flags (BPF_ANY) at 24.
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64)
            .u64(16, &value as *const u32 as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
    }

    /// Stops steering rx queue `queue` (its frames go to the kernel stack again).
    pub fn remove(&self, queue: u32) -> io::Result<()> {
        let key = queue;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64);
        bpf(BPF_MAP_DELETE_ELEM, &mut a).map(drop)
    }
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const XDP_PASS: i32 = 2;

/// The program, for the XSKMAP `map`:
///
/// ```text
/// r2 = *(u32 *)(r1 + rx_queue_index)   ; key: the frame's rx queue
/// r1 = map                             ; ld_imm64, the map by descriptor
/// r3 = XDP_PASS                        ; flags: the action when the key has no socket
/// call bpf_redirect_map
/// exit                                 ; r0: XDP_REDIRECT or XDP_PASS
/// ```
fn redirect_program(map: RawFd) -> [Insn; 6] {
    [
        insn(0x61, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0), // BPF_LDX | BPF_MEM | BPF_W
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map),   // BPF_LD | BPF_DW | BPF_IMM
        insn(0x00, 0, 0, 0, 0),                     // second half of the 64-bit load
        insn(0xb7, 3, 0, 0, XDP_PASS),              // BPF_ALU64 | BPF_MOV | BPF_K
        insn(0x85, 0, 0, 0, BPF_FUNC_REDIRECT_MAP), // BPF_JMP | BPF_CALL
        insn(0x95, 0, 0, 0, 0),                     // BPF_JMP | BPF_EXIT
    ]
}

/// A loaded XDP program.
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads the redirect program for `map`. On a verifier refusal the error carries the
    /// verifier's log.
    pub fn redirect(map: &XskMap) -> io::Result<Program> {
        let insns = redirect_program(map.fd.as_raw_fd());
        let license = b"Dual MIT/GPL\0";
        let mut log = vec![0u8; 64 * 1024];
        let load = |log_level: u32, log: &mut [u8]| {
            let mut a = Attr::new();
            // prog_type, insn_cnt, insns, license, log_level, log_size, log_buf, ...,
            // prog_name at 48, expected_attach_type at 68.
            a.u32(0, BPF_PROG_TYPE_XDP)
                .u32(4, insns.len() as u32)
                .u64(8, insns.as_ptr() as u64)
                .u64(16, license.as_ptr() as u64)
                .u32(24, log_level)
                .u32(28, if log_level > 0 { log.len() as u32 } else { 0 })
                .u64(
                    32,
                    if log_level > 0 {
                        log.as_mut_ptr() as u64
                    } else {
                        0
                    },
                )
                .name(48, "tern_xsk")
                .u32(68, BPF_XDP);
            bpf(BPF_PROG_LOAD, &mut a)
        };
        match load(0, &mut log) {
            Ok(fd) => Ok(Program { fd: owned(fd) }),
            Err(first) => {
                // Load again with the log on, to say why.
                let _ = load(1, &mut log);
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                Err(io::Error::new(
                    first.kind(),
                    format!("BPF_PROG_LOAD: {first}; verifier log: {}", text.trim()),
                ))
            }
        }
    }

    /// Attaches to interface `ifindex` with `flags` (native or generic mode); the program
    /// stays attached as long as the returned link lives.
    pub fn attach(&self, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
        let mut a = Attr::new();
        // prog_fd, target_ifindex, attach_type, flags.
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u32(4, ifindex)
            .u32(8, BPF_XDP)
            .u32(12, flags);
        bpf(BPF_LINK_CREATE, &mut a).map(owned)
    }
}
