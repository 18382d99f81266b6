//! The wires and the devices under test.
//!
//! ```text
//!  gen ns                     dut ns                          sink ns
//!  gen0 198.18.0.2 ── veth ── dut0 198.18.0.1 | dut1 198.19.0.1 ── veth ── sink0 198.19.0.2
//!  (core 0: generator,        (core 1: the DUT and the napi       (nft ingress: count and
//!   sink's napi thread)        threads of dut0/dut1)               drop udp dport 9)
//! ```
//!
//! Every mode forwards gen → sink on the same veth pairs (tern-tap uses its TAP devices in
//! place of them) with the same routes. A trial measures, between two snapshots around the
//! generator's run: frames offered (the generator), forwarded (the DUT's egress counter),
//! delivered (the sink's nft counter) and the CPU time of every DUT thread
//! (`/proc/<tid>/schedstat`), the napi kernel threads that run the veth receive path (and,
//! with AF_XDP, the XDP program and the copy into the UMEM) and `ksoftirqd` of the DUT core.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{veth, Netns};

pub const GEN_CORE: usize = 0;
pub const DUT_CORE: usize = 1;
pub const GEN_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0];
pub const DUT_A_MAC: [u8; 6] = [2, 0, 0, 0, 0xd0, 0];
pub const DUT_B_MAC: [u8; 6] = [2, 0, 0, 0, 0xd0, 1];
pub const SINK_MAC: [u8; 6] = [2, 0, 0, 0, 2, 0];
pub const GEN_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const NEXT_HOP: &str = "198.19.0.2";
/// Destinations without a full table: this prefix, routed via the sink.
pub const TEST_NET: &str = "198.19.128.0/17";

pub fn mac_text(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Kernel,
    TernAfxdp,
    TernTap,
    Floor,
    /// DPDK's l3fwd example (LPM) on the af_xdp PMD, built from Debian's sources at run time.
    DpdkL3fwd,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Mode::Kernel,
        Mode::TernAfxdp,
        Mode::TernTap,
        Mode::Floor,
        Mode::DpdkL3fwd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::TernAfxdp => "tern-afxdp",
            Mode::TernTap => "tern-tap",
            Mode::Floor => "floor",
            Mode::DpdkL3fwd => "dpdk-l3fwd",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }

    pub fn is_tern(self) -> bool {
        matches!(self, Mode::TernAfxdp | Mode::TernTap)
    }
}

/// What the forwarders do besides routing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipeline {
    /// Route and rewrite MACs.
    Plain,
    /// And masquerade every flow behind dut1's address (tern's NAT; the kernel's nftables).
    Snat,
    /// And encapsulate in GRE (key 1) towards the sink (tern only: this kernel has no GRE).
    Gre,
}

impl Pipeline {
    pub fn parse(s: &str) -> Option<Pipeline> {
        match s {
            "plain" => Some(Pipeline::Plain),
            "snat" => Some(Pipeline::Snat),
            "gre" => Some(Pipeline::Gre),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Pipeline::Plain => "plain",
            Pipeline::Snat => "snat",
            Pipeline::Gre => "gre",
        }
    }

    /// Whether `mode` can run this pipeline (the floor is the I/O reference for all).
    pub fn supports(self, mode: Mode) -> bool {
        match self {
            Pipeline::Plain => true,
            Pipeline::Snat => mode != Mode::DpdkL3fwd,
            Pipeline::Gre => mode.is_tern() || mode == Mode::Floor,
        }
    }
}

/// The three namespaces and their veth pairs; all deleted on drop.
pub struct Wires {
    pub gen: Netns,
    pub dut: Netns,
    pub sink: Netns,
    pub dir: PathBuf,
    /// The route file for tern (one prefix per line) when a table is loaded.
    pub table: Option<PathBuf>,
    /// The same routes as l3fwd rule files (IPv4, IPv6).
    pub l3fwd_rules: (PathBuf, PathBuf),
    pub pipeline: Pipeline,
}

fn write_sys(ns: &Netns, path: &str, value: &str) {
    ns.ok(&["sh", "-c", &format!("echo {value} > {path}")]);
}

impl Wires {
    /// Builds the namespaces; with `table`, installs its prefixes via the sink in the
    /// kernel of the DUT namespace (tern gets them from a route file).
    pub fn new(table: Option<&[ipnet::Ipv4Net]>, pipeline: Pipeline) -> Wires {
        let gen = Netns::new("bg");
        let dut = Netns::new("bd");
        let sink = Netns::new("bs");
        let dir = std::env::temp_dir().join(crate::unique("tern-bench-"));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        veth(&gen, "gen0", &dut, "dut0", 1);
        veth(&dut, "dut1", &sink, "sink0", 1);
        gen.ok(&[
            "ip",
            "link",
            "set",
            "gen0",
            "address",
            &mac_text(&GEN_MAC),
            "up",
        ]);
        gen.ok(&["ip", "addr", "add", "198.18.0.2/24", "dev", "gen0"]);
        sink.ok(&[
            "ip",
            "link",
            "set",
            "sink0",
            "address",
            &mac_text(&SINK_MAC),
            "up",
        ]);
        sink.ok(&["ip", "addr", "add", "198.19.0.2/24", "dev", "sink0"]);
        dut.ok(&[
            "ip",
            "link",
            "set",
            "dut0",
            "address",
            &mac_text(&DUT_A_MAC),
            "up",
        ]);
        dut.ok(&[
            "ip",
            "link",
            "set",
            "dut1",
            "address",
            &mac_text(&DUT_B_MAC),
            "up",
        ]);
        dut.ok(&["ip", "addr", "add", "198.18.0.1/24", "dev", "dut0"]);
        dut.ok(&["ip", "addr", "add", "198.19.0.1/24", "dev", "dut1"]);
        // GRO on gives the veth receive side a NAPI instance; threaded NAPI runs it in a
        // kernel thread we can pin and account for (otherwise it runs in the softirq of
        // whichever CPU sent the frame: the generator's). veth only hands a frame to NAPI
        // when the sender has TSO off (attaching XDP turns it off on the peer; the kernel
        // mode has no XDP), so TSO goes off on both senders for every mode alike.
        for (ns, dev) in [(&dut, "dut0"), (&dut, "dut1"), (&sink, "sink0")] {
            ns.ok(&["ethtool", "-K", dev, "gro", "on"]);
            write_sys(ns, &format!("/sys/class/net/{dev}/threaded"), "1");
        }
        gen.ok(&["ethtool", "-K", "gen0", "tso", "off"]);
        dut.ok(&["ethtool", "-K", "dut1", "tso", "off"]);
        for ns in [&gen, &dut, &sink] {
            let _ = ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        }
        sink.ok(&[
            "nft",
            "add table netdev bench; \
             add chain netdev bench in { type filter hook ingress device sink0 priority 0; }; \
             add rule netdev bench in udp dport 9 counter drop; \
             add rule netdev bench in ip protocol gre counter drop",
        ]);
        let table_file = table.map(|prefixes| {
            let path = dir.join("routes.txt");
            let text: String = prefixes.iter().map(|p| format!("{p}\n")).collect();
            std::fs::write(&path, text).expect("route file");
            let batch = dir.join("routes.batch");
            let text: String = prefixes
                .iter()
                .map(|p| format!("route replace {p} via {NEXT_HOP}\n"))
                .collect();
            std::fs::write(&batch, text).expect("batch file");
            dut.ok(&["ip", "-batch", &batch.display().to_string()]);
            path
        });
        if table_file.is_none() {
            dut.ok(&["ip", "route", "add", TEST_NET, "via", NEXT_HOP]);
        }
        if pipeline == Pipeline::Snat {
            // The kernel's counterpart of tern's [nat]: conntrack + masquerade on dut1.
            dut.ok(&[
                "nft",
                "add table ip nat; \
                 add chain ip nat post { type nat hook postrouting priority 100; }; \
                 add rule ip nat post oifname dut1 masquerade",
            ]);
        }
        // l3fwd: "R<prefix> <port>"; port 1 is dut1 (towards the sink).
        let mut rules = String::from("R198.18.0.0/24 0\n");
        match table {
            Some(prefixes) => prefixes.iter().for_each(|p| rules += &format!("R{p} 1\n")),
            None => rules += &format!("R{TEST_NET} 1\n"),
        }
        let l3fwd_rules = (dir.join("l3fwd-v4.cfg"), dir.join("l3fwd-v6.cfg"));
        std::fs::write(&l3fwd_rules.0, rules).expect("l3fwd rules");
        std::fs::write(&l3fwd_rules.1, "R2001:db8::/32 1\n").expect("l3fwd rules");
        Wires {
            gen,
            dut,
            sink,
            dir,
            table: table_file,
            l3fwd_rules,
            pipeline,
        }
    }

    /// Frames the sink counted (and dropped).
    pub fn delivered(&self) -> u64 {
        let out = self.sink.ok(&["nft", "list", "table", "netdev", "bench"]);
        // "... counter packets N bytes M drop" once per chain.
        out.split("counter packets ")
            .skip(1)
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }

    fn stat(ns: &Netns, dev: &str, name: &str) -> u64 {
        ns.exec(&["cat", &format!("/sys/class/net/{dev}/statistics/{name}")])
            .stdout
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .trim()
            .parse()
            .unwrap_or(0)
    }

    /// Pins the napi threads: the DUT's to the DUT core, the sink's to the generator core.
    /// Returns the DUT's (for CPU accounting) with ksoftirqd of the DUT core.
    fn kernel_threads(&self) -> Vec<u32> {
        let mut dut = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            let comm = comm.trim();
            if comm.starts_with("napi/dut0-") || comm.starts_with("napi/dut1-") {
                pin(pid, DUT_CORE);
                dut.push(pid);
            } else if comm.starts_with("napi/sink0-") {
                pin(pid, GEN_CORE);
            } else if comm == format!("ksoftirqd/{DUT_CORE}") {
                dut.push(pid);
            }
        }
        dut
    }
}

impl Drop for Wires {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pin(pid: u32, core: usize) {
    // SAFETY: a cpu_set_t built with the libc macros, for a thread id we read from /proc.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(pid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Nanoseconds on CPU of every thread of `pid` (and of `pid` alone for a kernel thread).
fn cpu_ns(pid: u32) -> u64 {
    crate::thread_cpu_ns(pid).values().sum()
}

/// A running device under test.
pub struct Dut {
    pub mode: Mode,
    process: Option<Child>,
    /// tern's ctl socket (tern modes).
    socket: Option<PathBuf>,
    /// The interfaces the generator sends on and the sink counts on.
    pub gen_if: &'static str,
    sink_chain: Option<String>,
}

/// One snapshot of the counters a trial subtracts.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    pub at: Option<Instant>,
    pub forwarded: u64,
    pub delivered: u64,
    pub cpu_ns: u64,
}

fn tern_config(w: &Wires, mode: Mode, socket: &Path) -> String {
    let (a, b, backend) = match mode {
        Mode::TernTap => ("tgen0", "tsink0", "tap"),
        _ => ("dut0", "dut1", "afxdp"),
    };
    let routes = match &w.table {
        Some(file) => format!("file = \"{}\"", file.display()),
        None => format!("prefix = \"{TEST_NET}\""),
    };
    let (gateway, extra) = match w.pipeline {
        Pipeline::Plain => (format!("via = \"{NEXT_HOP}\""), String::new()),
        Pipeline::Snat => (
            format!("via = \"{NEXT_HOP}\""),
            format!("[nat]\ninside = [\"{a}\"]\noutside = [\"{b}\"]\ncapacity = 262144\n\n"),
        ),
        Pipeline::Gre => (
            "interface = \"gre0\"".to_string(),
            format!(
                "[[tunnel]]\nname = \"gre0\"\nkind = \"gre\"\nlocal = \"198.19.0.1\"\nremote = \"{NEXT_HOP}\"\nkey = 1\n\n"
            ),
        ),
    };
    format!(
        "[dataplane]\nworkers = 1\nburst = 64\npool = 8192\n\n\
         [control]\nsocket = \"{}\"\n\n\
         [[interface]]\nname = \"{a}\"\nbackend = \"{backend}\"\nmac = \"{}\"\naddresses = [\"198.18.0.1/24\"]\n\n\
         [[interface]]\nname = \"{b}\"\nbackend = \"{backend}\"\nmac = \"{}\"\naddresses = [\"198.19.0.1/24\"]\n\n\
         {extra}[[route]]\n{routes}\n{gateway}\n",
        socket.display(),
        mac_text(&DUT_A_MAC),
        mac_text(&DUT_B_MAC),
    )
}

impl Dut {
    /// Starts `mode` and waits until it is ready to forward.
    pub fn start(w: &Wires, mode: Mode, exe: &Path) -> Result<Dut, String> {
        let core = DUT_CORE.to_string();
        let mut dut = Dut {
            mode,
            process: None,
            socket: None,
            gen_if: "gen0",
            sink_chain: None,
        };
        match mode {
            Mode::Kernel => {
                w.dut.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            }
            Mode::Floor => {
                let child = w
                    .dut
                    .command(&[
                        "taskset",
                        "-c",
                        &core,
                        &exe.display().to_string(),
                        "floor",
                        "--a",
                        "dut0",
                        "--b",
                        "dut1",
                        "--next-hop",
                        &mac_text(&SINK_MAC),
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("floor: {e}"))?;
                dut.process = Some(child);
                // Ready once the program is attached to both ports.
                wait_for(Duration::from_secs(10), || {
                    w.dut
                        .ok(&["ip", "link", "show", "dut1"])
                        .contains("prog/xdp")
                })
                .map_err(|_| "floor did not attach".to_string())?;
            }
            Mode::DpdkL3fwd => {
                let l3fwd = build_l3fwd(exe)?;
                let log_path = w.dir.join("dpdk-l3fwd.log");
                let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
                let child = w
                    .dut
                    .command(&["taskset", "-c", &core])
                    .arg(&l3fwd)
                    .args([
                        "-l",
                        &core,
                        "--no-huge",
                        "-m",
                        "512",
                        "--no-pci",
                        "--file-prefix=tern-bench",
                        "--vdev=net_af_xdp0,iface=dut0",
                        "--vdev=net_af_xdp1,iface=dut1",
                        "--",
                        "-p",
                        "0x3",
                        &format!("--config=(0,0,{core}),(1,0,{core})"),
                        "-P",
                        "--parse-ptype",
                        &format!("--rule_ipv4={}", w.l3fwd_rules.0.display()),
                        &format!("--rule_ipv6={}", w.l3fwd_rules.1.display()),
                        &format!("--eth-dest=0,{}", mac_text(&GEN_MAC)),
                        &format!("--eth-dest=1,{}", mac_text(&SINK_MAC)),
                    ])
                    .stdout(log.try_clone().map_err(|e| e.to_string())?)
                    .stderr(log)
                    .spawn()
                    .map_err(|e| format!("dpdk-l3fwd: {e}"))?;
                dut.process = Some(child);
                // rte_lpm adds a rule with a linear scan of its depth group, so a full table
                // takes minutes to load.
                wait_for(Duration::from_secs(1800), || {
                    std::fs::read_to_string(&log_path)
                        .unwrap_or_default()
                        .contains("entering main loop")
                })
                .map_err(|_| {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(15).collect();
                    format!("dpdk-l3fwd did not start: {}", tail.join("\n"))
                })?;
            }
            Mode::TernAfxdp | Mode::TernTap => {
                let socket = w.dir.join(format!("{}.sock", mode.name()));
                let _ = std::fs::remove_file(&socket);
                let config = w.dir.join(format!("{}.toml", mode.name()));
                std::fs::write(&config, tern_config(w, mode, &socket))
                    .map_err(|e| e.to_string())?;
                let log_path = w.dir.join(format!("{}.log", mode.name()));
                let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
                let child = w
                    .dut
                    .command(&["taskset", "-c", &core])
                    .arg(crate::tern_binary())
                    .args(["run", "--config"])
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .map_err(|e| format!("tern: {e}"))?;
                dut.process = Some(child);
                wait_for(Duration::from_secs(60), || {
                    dataplane::ctl::request(&socket, &["show".into(), "interfaces".into()]).is_ok()
                })
                .map_err(|_| {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    format!("{} did not come up: {log}", mode.name())
                })?;
                dut.socket = Some(socket);
                if mode == Mode::TernTap {
                    w.dut
                        .ok(&["ip", "link", "set", "tgen0", "netns", &w.gen.name]);
                    w.dut
                        .ok(&["ip", "link", "set", "tsink0", "netns", &w.sink.name]);
                    w.gen.ok(&["ip", "link", "set", "tgen0", "up"]);
                    w.sink.ok(&[
                        "ip",
                        "link",
                        "set",
                        "tsink0",
                        "address",
                        &mac_text(&SINK_MAC),
                        "up",
                    ]);
                    w.sink
                        .ok(&["ip", "addr", "add", "198.19.0.2/24", "dev", "tsink0"]);
                    let chain = "tap".to_string();
                    w.sink.ok(&[
                        "nft",
                        &format!(
                            "add chain netdev bench {chain} {{ type filter hook ingress device tsink0 priority 0; }}; \
                             add rule netdev bench {chain} udp dport 9 counter drop; \
                             add rule netdev bench {chain} ip protocol gre counter drop"
                        ),
                    ]);
                    dut.sink_chain = Some(chain);
                    dut.gen_if = "tgen0";
                }
            }
        }
        Ok(dut)
    }

    pub fn snapshot(&self, w: &Wires) -> Snapshot {
        let mut pids = w.kernel_threads();
        if let Some(p) = &self.process {
            pids.push(p.id());
        }
        let forwarded = match (self.mode, &self.socket) {
            (Mode::TernTap, Some(socket)) => {
                dataplane::ctl::request(socket, &["show".into(), "counters".into()])
                    .ok()
                    .and_then(|v| v["interfaces"]["tsink0"]["tx_packets"].as_u64())
                    .unwrap_or(0)
            }
            _ => Wires::stat(&w.dut, "dut1", "tx_packets"),
        };
        Snapshot {
            at: Some(Instant::now()),
            forwarded,
            delivered: w.delivered(),
            cpu_ns: pids.iter().map(|&p| cpu_ns(p)).sum(),
        }
    }

    /// tern's own count of frames sent on its egress port (tern modes).
    pub fn tern_tx(&self) -> Option<u64> {
        let socket = self.socket.as_ref()?;
        let name = if self.mode == Mode::TernTap {
            "tsink0"
        } else {
            "dut1"
        };
        dataplane::ctl::request(socket, &["show".into(), "counters".into()]).ok()?["interfaces"]
            [name]["tx_packets"]
            .as_u64()
    }

    pub fn stop(mut self, w: &Wires) {
        if self.mode == Mode::Kernel {
            w.dut.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=0"]);
        }
        if let Some(mut child) = self.process.take() {
            // SAFETY: signalling the process we spawned, by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if self.mode == Mode::DpdkL3fwd {
            // The PMD detaches its program when it closes the ports; make sure.
            for dev in ["dut0", "dut1"] {
                let _ = w.dut.exec(&["ip", "link", "set", "dev", dev, "xdp", "off"]);
            }
            let _ = std::fs::remove_dir_all("/var/run/dpdk/tern-bench");
        }
        if let Some(chain) = self.sink_chain.take() {
            let _ = w
                .sink
                .exec(&["nft", &format!("delete chain netdev bench {chain}")]);
        }
        // A queue is free for the next AF_XDP bind a moment after its socket closed.
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Builds DPDK's l3fwd from Debian's example sources (dpdk-doc, libdpdk-dev) into
/// `target/dpdk-l3fwd`, once. Two edits, both needed on veth: no RX checksum offload (the
/// af_xdp PMD on veth has none) and room for a full table (the example allows 1024 routes).
/// Nothing of DPDK is kept in the repository.
fn build_l3fwd(exe: &Path) -> Result<PathBuf, String> {
    let src = Path::new("/usr/share/dpdk/examples");
    if !src.join("l3fwd/main.c").exists() {
        return Err(
            "dpdk-l3fwd needs Debian's dpdk-doc and libdpdk-dev: bash .ci/install-deps --bench"
                .into(),
        );
    }
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target folder")?
        .join("dpdk-l3fwd");
    let binary = target.join("l3fwd/build/l3fwd");
    if binary.exists() {
        return Ok(binary);
    }
    std::fs::create_dir_all(&target).map_err(|e| e.to_string())?;
    let sh = |script: &str| -> Result<(), String> {
        let out = std::process::Command::new("sh")
            .args(["-c", script])
            .current_dir(&target)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "building dpdk-l3fwd: {script}: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    sh("rm -rf l3fwd common && cp -r /usr/share/dpdk/examples/l3fwd /usr/share/dpdk/examples/common .")?;
    sh("sed -i 's/\\.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,/.offloads = 0,/' l3fwd/main.c")?;
    sh("sed -i 's/define IPV4_L3FWD_LPM_MAX_RULES .*/define IPV4_L3FWD_LPM_MAX_RULES (1 << 21)/' l3fwd/l3fwd_lpm.c")?;
    sh("grep -q 'offloads = 0,' l3fwd/main.c && make -C l3fwd -j2 >/dev/null")?;
    Ok(binary)
}

fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> Result<(), ()> {
    let deadline = Instant::now() + limit;
    while !ready() {
        if Instant::now() > deadline {
            return Err(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The generator, run in the gen namespace on its core; returns the frames it sent.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    w: &Wires,
    exe: &Path,
    ifname: &str,
    destinations: &Path,
    frame_len: usize,
    rate: u64,
    duration: Duration,
) -> Result<u64, String> {
    let out = w
        .gen
        .command(&[
            "taskset",
            "-c",
            &GEN_CORE.to_string(),
            &exe.display().to_string(),
            "gen",
            "--ifname",
            ifname,
            "--destinations",
            &destinations.display().to_string(),
            "--frame-len",
            &frame_len.to_string(),
            "--rate",
            &rate.to_string(),
            "--seconds",
            &duration.as_secs_f64().to_string(),
        ])
        .output()
        .map_err(|e| format!("generator: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "generator failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| "generator printed no count".into())
}
