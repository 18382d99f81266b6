//! Network-namespace topologies around a real tern process.
//!
//! Everything created here is deleted on drop, also when a test panics: namespaces
//! ([`Netns`]), the tern process ([`Tern`], which takes its TAP devices with it) and
//! captures ([`Capture`]). Names carry the process id and a counter, so tests can run in
//! parallel. Only RFC 5737 / RFC 3849 documentation addresses are used.

pub mod bench;
pub mod bgp_churn;
pub mod bgp_load;
pub mod bgp_peer;
pub mod bird;
pub mod exabgp;
pub mod frr;
pub mod gobgp;
pub mod tables;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `{prefix}{pid}x{n}` (≤ 15 chars with a
/// short prefix, so it also works as an interface name).
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    out
}

/// Runs a command on the host and panics with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = run(Command::new(args[0]).args(&args[1..]));
    if !out.status.success() {
        panic!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop (with every interface in it).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs a command inside; returns its output whatever the exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Runs a command inside and panics (with its output) if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.exec(args);
        if !out.status.success() {
            panic!(
                "[{}] {args:?} failed: {}{}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {args:?}: {e}"))
    }

    /// `GET path` from `addr` (e.g. tern's metrics endpoint) inside this namespace: the
    /// body of a 200 answer, or what went wrong.
    pub fn http_get(&self, addr: &str, path: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let addr = addr.to_string();
        let path = path.to_string();
        self.run_inside(move || {
            let mut s = std::net::TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
            let mut answer = String::new();
            s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
            match answer.split_once("\r\n\r\n") {
                Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
                _ => Err(format!("bad answer: {answer}")),
            }
        })?
    }

    /// Runs `f` on a thread that has entered this namespace (sockets it makes live here).
    pub fn run_inside<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, String> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsRawFd;
                let ns = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                // SAFETY: setns on a valid namespace descriptor; it changes only this thread,
                // which ends with the scope.
                if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| "the namespace thread panicked".to_string())?
        })
    }

    /// Moves a host-side interface into this namespace.
    pub fn adopt(&self, ifname: &str) {
        sh(&["ip", "link", "set", ifname, "netns", &self.name]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A child process (a test's server) killed and reaped when the test ends, also on panic.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Resident memory of process `pid` in KiB (`VmRSS`), 0 when it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Nanoseconds on CPU (`/proc/<tid>/schedstat`) of every thread of `pid`, summed per
/// thread name (for a kernel thread, of `pid` itself).
pub fn thread_cpu_ns(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in tasks.flatten().map(|t| t.path()) {
        let ns = std::fs::read_to_string(task.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
        let name = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        if let Some(ns) = ns {
            *by_name.entry(name.trim().to_string()).or_insert(0) += ns;
        }
    }
    by_name
}

/// The `tern` binary next to the test executable (`target/<profile>/tern`), or `$TERN_BIN`.
pub fn tern_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TERN_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("tern");
    assert!(
        bin.exists(),
        "{} not built: run `cargo build --release -p dataplane` (or set TERN_BIN)",
        bin.display()
    );
    bin
}

/// A running `tern run` process with its own config and ctl socket; SIGTERM and wait on drop.
pub struct Tern {
    child: Option<Child>,
    pub socket: PathBuf,
    dir: PathBuf,
}

impl Tern {
    /// Starts tern on `config` (TOML text; `{socket}` is replaced by a private socket path)
    /// and waits until it answers on its socket.
    pub fn start(config: &str) -> Tern {
        Tern::start_in(None, config)
    }

    /// As [`Tern::start`], inside network namespace `ns` when given (AF_XDP ports are
    /// interfaces of that namespace).
    pub fn start_in(ns: Option<&Netns>, config: &str) -> Tern {
        let dir = std::env::temp_dir().join(unique("tern-test-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let socket = dir.join("tern.sock");
        let config = config.replace("{socket}", &socket.display().to_string());
        let path = dir.join("tern.toml");
        std::fs::write(&path, config).expect("write config");
        let log = std::fs::File::create(dir.join("tern.log")).expect("log");
        let mut command = match ns {
            // `ip netns exec` execs tern in place: the child's pid is tern's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(tern_binary());
                c
            }
            None => Command::new(tern_binary()),
        };
        let child = command
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tern");
        let mut t = Tern {
            child: Some(child),
            socket,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.try_ctl(&["show", "interfaces"]).is_err() {
            if let Some(Ok(Some(status))) = t.child.as_mut().map(|c| c.try_wait()) {
                panic!("tern exited with {status}: {}", t.log());
            }
            assert!(
                Instant::now() < deadline,
                "tern did not come up: {}",
                t.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        t
    }

    pub fn try_ctl(&self, words: &[&str]) -> Result<Value, String> {
        let words: Vec<String> = words.iter().map(|s| s.to_string()).collect();
        dataplane::ctl::request(&self.socket, &words)
    }

    pub fn ctl(&self, words: &[&str]) -> Value {
        self.try_ctl(words)
            .unwrap_or_else(|e| panic!("tern ctl {words:?}: {e}"))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tern.log")).unwrap_or_default()
    }

    /// tern's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// A drop counter by its stable name.
    pub fn drop_count(&self, reason: &str) -> u64 {
        self.ctl(&["show", "counters"])["drops"][reason]
            .as_u64()
            .unwrap_or_else(|| panic!("no drop counter {reason}"))
    }

    /// Kills tern with SIGKILL (no cleanup of its own can run) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops tern with SIGTERM and waits (at most 10 s) for it to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: signalling the child we spawned, by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tern {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How tern's ports reach the hosts of a topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ports {
    /// TAP devices tern creates, moved into the host namespaces.
    Tap,
    /// veth pairs; tern runs in its own namespace and adopts its ends with AF_XDP.
    AfXdp,
}

impl Ports {
    fn backend(self) -> &'static str {
        match self {
            Ports::Tap => "tap",
            Ports::AfXdp => "afxdp",
        }
    }
}

/// Declares one test per backend for each named scenario `fn NAME(ports: Ports)`: modules
/// `tap` and `afxdp`, so `cargo nextest run afxdp::` runs the AF_XDP half.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod tap {
            $(#[test]
            fn $name() {
                super::$name($crate::Ports::Tap)
            })*
        }
        mod afxdp {
            $(#[test]
            fn $name() {
                super::$name($crate::Ports::AfXdp)
            })*
        }
    };
}

/// Two Linux hosts, A and B, each on its own tern port:
///
/// ```text
///  A 192.0.2.2/24 2001:db8:a::2/64 ── tern 192.0.2.1 | 203.0.113.1 ── B 203.0.113.2/24 2001:db8:b::2/64
/// ```
///
/// The host side of each link has the same name as tern's port (`tap_a`, `tap_b`).
pub struct TwoHosts {
    pub a: Netns,
    pub b: Netns,
    pub tern: Tern,
    pub tap_a: String,
    pub tap_b: String,
    /// tern's configuration (before `{socket}` is filled in), to start it again.
    pub config: String,
    /// tern's namespace with AF_XDP ports (dropped last: tern goes first).
    pub dut: Option<Netns>,
}

pub const A4: &str = "192.0.2.2";
pub const B4: &str = "203.0.113.2";
pub const TERN_A4: &str = "192.0.2.1";
pub const TERN_B4: &str = "203.0.113.1";
pub const A6: &str = "2001:db8:a::2";
pub const B6: &str = "2001:db8:b::2";
pub const TERN_A6: &str = "2001:db8:a::1";

impl TwoHosts {
    /// Builds the topology with TAP ports; `extra` is added to tern's config (routes,
    /// dataplane settings, NAT), `mtu_b` is the MTU of tern's port towards B.
    pub fn new(extra: &str, mtu_b: u16) -> TwoHosts {
        TwoHosts::with(Ports::Tap, extra, mtu_b)
    }

    pub fn with(ports: Ports, extra: &str, mtu_b: u16) -> TwoHosts {
        TwoHosts::build(ports, extra, mtu_b, 1)
    }

    /// As [`TwoHosts::with`]; AF_XDP links get `queues` queues each way (one per worker).
    ///
    /// `TERN_TEST_WORKERS=N` in the environment runs tern with N workers (and N queues per
    /// AF_XDP link) wherever `extra` does not set `[dataplane]` itself: a whole suite on
    /// several workers, e.g. `TERN_TEST_WORKERS=2 cargo nextest run -p testbed --test nat`.
    pub fn build(ports: Ports, extra: &str, mtu_b: u16, queues: usize) -> TwoHosts {
        let tap_a = unique("ta");
        let tap_b = unique("tb");
        // `extra` may name the ports as {tap_a} and {tap_b} (e.g. NAT interface roles).
        let mut extra = extra.replace("{tap_a}", &tap_a).replace("{tap_b}", &tap_b);
        let mut queues = queues;
        let workers = std::env::var("TERN_TEST_WORKERS").ok();
        if let Some(n) = workers.and_then(|w| w.parse::<usize>().ok()) {
            if !extra.contains("[dataplane]") {
                extra = format!("{extra}\n[dataplane]\nworkers = {n}\n");
                queues = queues.max(n);
            }
        }
        let backend = ports.backend();
        let config = format!(
            "[control]\nsocket = \"{{socket}}\"\n\n{extra}\n\n\
             [[interface]]\nname = \"{tap_a}\"\nbackend = \"{backend}\"\nmac = \"02:00:00:00:0a:01\"\naddresses = [\"192.0.2.1/24\", \"2001:db8:a::1/64\"]\n\n\
             [[interface]]\nname = \"{tap_b}\"\nbackend = \"{backend}\"\nmac = \"02:00:00:00:0b:01\"\nmtu = {mtu_b}\naddresses = [\"203.0.113.1/24\", \"2001:db8:b::1/64\"]\n"
        );
        let a = Netns::new("ha");
        let b = Netns::new("hb");
        let (tern, dut) = match ports {
            Ports::Tap => {
                let tern = Tern::start(&config);
                a.adopt(&tap_a);
                b.adopt(&tap_b);
                (tern, None)
            }
            Ports::AfXdp => {
                let dut = Netns::new("hd");
                veth(&dut, &tap_a, &a, &tap_a, queues);
                veth(&dut, &tap_b, &b, &tap_b, queues);
                (Tern::start_in(Some(&dut), &config), Some(dut))
            }
        };
        host(
            &a,
            &tap_a,
            "192.0.2.2/24",
            "2001:db8:a::2/64",
            Some((TERN_A4, TERN_A6)),
            1500,
        );
        host(
            &b,
            &tap_b,
            "203.0.113.2/24",
            "2001:db8:b::2/64",
            Some((TERN_B4, "2001:db8:b::1")),
            mtu_b,
        );
        TwoHosts {
            a,
            b,
            tern,
            tap_a,
            tap_b,
            config,
            dut,
        }
    }
}

/// A veth pair with `queues` queues each way: `left` in namespace `l`, `right` in `r`
/// (gone with either namespace).
pub fn veth(l: &Netns, left: &str, r: &Netns, right: &str, queues: usize) {
    let q = queues.to_string();
    sh(&[
        "ip",
        "link",
        "add",
        left,
        "netns",
        &l.name,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        right,
        "netns",
        &r.name,
        "numrxqueues",
        &q,
        "numtxqueues",
        &q,
    ]);
}

/// Moves tern's TAP device `tap` into `ns` and configures it as a host interface (see
/// [`host`]).
pub fn attach(ns: &Netns, tap: &str, v4: &str, v6: &str, gateway: Option<(&str, &str)>, mtu: u16) {
    ns.adopt(tap);
    host(ns, tap, v4, v6, gateway, mtu);
}

/// Configures interface `tap` of `ns` as a host interface: up with `mtu`, the addresses,
/// default routes via `gateway` (IPv4, IPv6), DAD off. Offloads stay as the kernel sets
/// them (tx checksumming, TSO/GSO, GRO): hosts are tested as users run them.
pub fn host(ns: &Netns, tap: &str, v4: &str, v6: &str, gateway: Option<(&str, &str)>, mtu: u16) {
    ns.ok(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.accept_dad=0",
        &format!("net.ipv6.conf.{tap}.accept_dad=0"),
    ]);
    ns.ok(&["ip", "link", "set", tap, "mtu", &mtu.to_string(), "up"]);
    ns.ok(&["ip", "addr", "add", v4, "dev", tap]);
    ns.ok(&["ip", "-6", "addr", "add", v6, "dev", tap, "nodad"]);
    if let Some((gw4, gw6)) = gateway {
        ns.ok(&["ip", "route", "add", "default", "via", gw4]);
        ns.ok(&["ip", "-6", "route", "add", "default", "via", gw6]);
    }
}

/// Runs ping inside `ns` (numeric output); returns stdout and stderr together.
pub fn ping(ns: &Netns, args: &[&str]) -> String {
    let mut a = vec!["ping", "-n"];
    a.extend_from_slice(args);
    let out = ns.exec(&a);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A tcpdump capture inside a namespace, written to a pcap file as it goes.
pub struct Capture {
    child: Option<Child>,
    pub path: PathBuf,
}

impl Capture {
    pub fn start(ns: &Netns, ifname: &str, filter: &str) -> Capture {
        let path = std::env::temp_dir().join(format!("{}.pcap", unique("cap")));
        let p = path.display().to_string();
        let mut args = vec![
            "tcpdump",
            "-Z",
            "root",
            "-i",
            ifname,
            "-U",
            "--immediate-mode",
            "-w",
            &p,
        ];
        if !filter.is_empty() {
            args.push(filter);
        }
        let child = ns
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        // tcpdump has no ready signal: wait for the file to appear.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        Capture {
            child: Some(child),
            path,
        }
    }

    /// Stops tcpdump (SIGINT, so it flushes) and returns the pcap path.
    pub fn stop(&mut self) -> &Path {
        if let Some(mut c) = self.child.take() {
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: signalling the child we spawned.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
        }
        &self.path
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Dissects a pcap with tshark: one row per packet matching `filter`, the `fields` in order.
pub fn tshark(pcap: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let p = pcap.display().to_string();
    let mut args = vec![
        "tshark",
        "-n",
        "-r",
        &p,
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=|",
    ];
    for f in fields {
        args.push("-e");
        args.push(f);
    }
    sh(&args)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_string).collect())
        .collect()
}

/// Runs a scapy script (Debian's python3 has scapy) with `args` in `sys.argv`.
pub fn scapy(ns: &Netns, script: &str, args: &[&str]) -> String {
    let mut a = vec!["/usr/bin/python3", "-c", script];
    a.extend_from_slice(args);
    ns.ok(&a)
}

/// Two sites joined by tunnels between two tern instances, across a Linux router W:
///
/// ```text
///  A 192.0.2.2 ── tern1 ══ tunnels ══ tern2 ── B 203.0.113.2
///    2001:db8:a::2   198.18.1.1 ── W ── 198.18.2.1   2001:db8:b::2
///                    2001:db8:1::1      2001:db8:2::1
/// ```
///
/// Each tern has the same tunnels towards the other (tunnel name → kind): `ipip`, `grep`
/// (GRE, no options), `grek` (GRE key 1001), `grex` (GRE key 2002, sequence numbers and
/// checksums), `sit` (6in4) and `gre6` (GRE over IPv6). Site routes start on `ipip`
/// (IPv4) and `sit` (IPv6); [`TunnelSites::route_via`] moves them.
pub struct TunnelSites {
    pub a: Netns,
    pub w: Netns,
    pub b: Netns,
    pub tern1: Tern,
    pub tern2: Tern,
    /// tern1's and tern2's WAN ports (their host side is in W, with the same names).
    pub w1: String,
    pub w2: String,
    pub tap_a: String,
    pub tap_b: String,
    /// With AF_XDP ports: tern1's and tern2's own namespaces (dropped after the terns).
    pub duts: Vec<Netns>,
}

pub const TERN1_WAN4: &str = "198.18.1.1";
pub const TERN2_WAN4: &str = "198.18.2.1";
pub const TERN1_WAN6: &str = "2001:db8:1::1";
pub const TERN2_WAN6: &str = "2001:db8:2::1";
pub const TERN1_WAN_MAC: &str = "02:00:00:00:01:01";
pub const TERN2_WAN_MAC: &str = "02:00:00:00:02:01";

fn tunnel_config(local4: &str, remote4: &str, local6: &str, remote6: &str) -> String {
    format!(
        "[[tunnel]]\nname = \"ipip\"\nkind = \"ipip\"\nlocal = \"{local4}\"\nremote = \"{remote4}\"\n\n\
         [[tunnel]]\nname = \"grep\"\nkind = \"gre\"\nlocal = \"{local4}\"\nremote = \"{remote4}\"\n\n\
         [[tunnel]]\nname = \"grek\"\nkind = \"gre\"\nlocal = \"{local4}\"\nremote = \"{remote4}\"\nkey = 1001\n\n\
         [[tunnel]]\nname = \"grex\"\nkind = \"gre\"\nlocal = \"{local4}\"\nremote = \"{remote4}\"\nkey = 2002\nsequence = true\nchecksum = true\n\n\
         [[tunnel]]\nname = \"sit\"\nkind = \"6in4\"\nlocal = \"{local4}\"\nremote = \"{remote4}\"\n\n\
         [[tunnel]]\nname = \"gre6\"\nkind = \"gre6\"\nlocal = \"{local6}\"\nremote = \"{remote6}\"\n"
    )
}

impl TunnelSites {
    pub fn new() -> TunnelSites {
        TunnelSites::with("")
    }

    /// As [`TunnelSites::new`], with `tern1_extra` added to tern1's config (`{tap_a}`
    /// names its port towards A).
    pub fn with(tern1_extra: &str) -> TunnelSites {
        TunnelSites::on(Ports::Tap, tern1_extra)
    }

    /// As [`TunnelSites::with`], with tern's ports of kind `ports`.
    pub fn on(ports: Ports, tern1_extra: &str) -> TunnelSites {
        let (tap_a, w1, w2, tap_b) = (unique("sa"), unique("w1"), unique("w2"), unique("sb"));
        let extra = tern1_extra.replace("{tap_a}", &tap_a);
        let backend = ports.backend();
        let config1 = format!(
            "[control]\nsocket = \"{{socket}}\"\n\n{extra}\n\
             [[interface]]\nname = \"{tap_a}\"\nbackend = \"{backend}\"\nmac = \"02:00:00:00:0a:01\"\naddresses = [\"192.0.2.1/24\", \"2001:db8:a::1/64\"]\n\n\
             [[interface]]\nname = \"{w1}\"\nbackend = \"{backend}\"\nmac = \"{TERN1_WAN_MAC}\"\naddresses = [\"198.18.1.1/24\", \"2001:db8:1::1/64\"]\n\n\
             {}\n\
             [[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"198.18.1.2\"\n\n\
             [[route]]\nprefix = \"::/0\"\nvia = \"2001:db8:1::2\"\n\n\
             [[route]]\nprefix = \"203.0.113.0/24\"\ninterface = \"ipip\"\n\n\
             [[route]]\nprefix = \"2001:db8:b::/64\"\ninterface = \"sit\"\n",
            tunnel_config(TERN1_WAN4, TERN2_WAN4, TERN1_WAN6, TERN2_WAN6)
        );
        let config2 = format!(
            "[control]\nsocket = \"{{socket}}\"\n\n\
             [[interface]]\nname = \"{w2}\"\nbackend = \"{backend}\"\nmac = \"{TERN2_WAN_MAC}\"\naddresses = [\"198.18.2.1/24\", \"2001:db8:2::1/64\"]\n\n\
             [[interface]]\nname = \"{tap_b}\"\nbackend = \"{backend}\"\nmac = \"02:00:00:00:0b:01\"\naddresses = [\"203.0.113.1/24\", \"2001:db8:b::1/64\"]\n\n\
             {}\n\
             [[route]]\nprefix = \"0.0.0.0/0\"\nvia = \"198.18.2.2\"\n\n\
             [[route]]\nprefix = \"::/0\"\nvia = \"2001:db8:2::2\"\n\n\
             [[route]]\nprefix = \"192.0.2.0/24\"\ninterface = \"ipip\"\n\n\
             [[route]]\nprefix = \"2001:db8:a::/64\"\ninterface = \"sit\"\n",
            tunnel_config(TERN2_WAN4, TERN1_WAN4, TERN2_WAN6, TERN1_WAN6)
        );
        let a = Netns::new("sa");
        let w = Netns::new("sw");
        let b = Netns::new("sb");
        let (tern1, tern2, duts) = match ports {
            Ports::Tap => {
                let (tern1, tern2) = (Tern::start(&config1), Tern::start(&config2));
                a.adopt(&tap_a);
                w.adopt(&w1);
                w.adopt(&w2);
                b.adopt(&tap_b);
                (tern1, tern2, Vec::new())
            }
            Ports::AfXdp => {
                let (d1, d2) = (Netns::new("d1"), Netns::new("d2"));
                veth(&d1, &tap_a, &a, &tap_a, 1);
                veth(&d1, &w1, &w, &w1, 1);
                veth(&d2, &w2, &w, &w2, 1);
                veth(&d2, &tap_b, &b, &tap_b, 1);
                let tern1 = Tern::start_in(Some(&d1), &config1);
                let tern2 = Tern::start_in(Some(&d2), &config2);
                (tern1, tern2, vec![d1, d2])
            }
        };
        host(
            &a,
            &tap_a,
            "192.0.2.2/24",
            "2001:db8:a::2/64",
            Some(("192.0.2.1", "2001:db8:a::1")),
            1500,
        );
        host(&w, &w1, "198.18.1.2/24", "2001:db8:1::2/64", None, 1500);
        host(&w, &w2, "198.18.2.2/24", "2001:db8:2::2/64", None, 1500);
        host(
            &b,
            &tap_b,
            "203.0.113.2/24",
            "2001:db8:b::2/64",
            Some(("203.0.113.1", "2001:db8:b::1")),
            1500,
        );
        w.ok(&[
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        TunnelSites {
            a,
            w,
            b,
            tern1,
            tern2,
            w1,
            w2,
            tap_a,
            tap_b,
            duts,
        }
    }

    /// Points both sites' IPv4 (or IPv6) routes at tunnel `name` on both terns.
    pub fn route_via(&self, name: &str, v6: bool) {
        let (to_b, to_a) = if v6 {
            ("2001:db8:b::/64", "2001:db8:a::/64")
        } else {
            ("203.0.113.0/24", "192.0.2.0/24")
        };
        self.tern1.ctl(&["route", "add", to_b, "dev", name]);
        self.tern2.ctl(&["route", "add", to_a, "dev", name]);
    }
}

impl Default for TunnelSites {
    fn default() -> Self {
        TunnelSites::new()
    }
}

/// A tunnel's row of `tern ctl show tunnels`.
pub fn tunnel_row(tern: &Tern, name: &str) -> Value {
    tern.ctl(&["show", "tunnels"])
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no tunnel {name}"))
}

/// Sends `mib` MiB over TCP from `from` to a server in `to` at `to_addr` (IPv4 or IPv6,
/// port 5001); returns ("bytes sha256" sent, "bytes sha256" received).
pub fn tcp_transfer(from: &Netns, to: &Netns, to_addr: &str, mib: u32) -> (String, String) {
    let server = r#"
import hashlib, socket
s = socket.create_server(("", 5001), family=socket.AF_INET6, dualstack_ipv6=True)
s.settimeout(60)
c, _ = s.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(n, h.hexdigest())
"#;
    let client = r#"
import hashlib, socket, sys, time
data = hashlib.sha256(b"tern").digest() * 32768  # 1 MiB, each copy stamped with a counter
h = hashlib.sha256(); s = None
for _ in range(100):
    try:
        s = socket.create_connection((sys.argv[1], 5001), timeout=5); break
    except OSError:
        time.sleep(0.1)
s.settimeout(60)
n = int(sys.argv[2])
for i in range(n):
    chunk = i.to_bytes(4, "big") + data[4:]
    s.sendall(chunk); h.update(chunk)
s.close()
print(n * len(data), h.hexdigest())
"#;
    let srv = to
        .command(&["/usr/bin/python3", "-c", server])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("server");
    let sent = scapy(from, client, &[to_addr, &mib.to_string()]);
    let out = srv.wait_with_output().expect("server output");
    (
        sent.trim().to_string(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// Sends one UDP datagram of each of `sizes` from `from` to a receiver in `to` at `to_addr`
/// (IPv4 or IPv6, port 5002), 10 ms apart; returns the payload sizes the receiver got, in
/// order. A datagram whose checksum the receiving kernel finds bad is not delivered.
/// UDP datagrams of `sizes`, then 100 MiB of TCP, from `from` to `to_addr` on `to`: every
/// datagram and every byte must arrive intact (`what` names the direction in a failure).
pub fn assert_udp_and_tcp_intact(
    from: &Netns,
    to: &Netns,
    to_addr: &str,
    sizes: &[usize],
    what: &str,
) {
    let got = udp_transfer(from, to, to_addr, sizes);
    assert_eq!(got, sizes, "{what}: every datagram delivered intact");
    let (sent, received) = tcp_transfer(from, to, to_addr, 100);
    assert_eq!(
        received, sent,
        "{what}: bytes and sha256 received equal those sent"
    );
    assert!(sent.starts_with("104857600 "), "{what}: {sent}");
}

pub fn udp_transfer(from: &Netns, to: &Netns, to_addr: &str, sizes: &[usize]) -> Vec<usize> {
    let server = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 5002)); s.settimeout(3)
print("ready", flush=True)
got = []
try:
    while len(got) < int(sys.argv[1]):
        b = s.recv(65535)
        if b != bytes(i % 251 for i in range(len(b))): b = b"corrupt"
        got.append(str(len(b)))
except socket.timeout:
    pass
print(" ".join(got))
"#;
    let client = r#"
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
for n in sys.argv[2:]:
    s.sendto(bytes(i % 251 for i in range(int(n))), (sys.argv[1], 5002)); time.sleep(0.01)
"#;
    let mut srv = to
        .command(&["/usr/bin/python3", "-c", server, &sizes.len().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("udp receiver");
    // The receiver says when it is bound.
    let mut out = srv.stdout.take().expect("receiver stdout");
    let mut ready = [0u8; 6];
    use std::io::Read;
    let _ = out.read_exact(&mut ready);
    let sizes: Vec<String> = sizes.iter().map(|n| n.to_string()).collect();
    let mut args = vec![to_addr];
    args.extend(sizes.iter().map(String::as_str));
    scapy(from, client, &args);
    let mut rest = String::new();
    let _ = out.read_to_string(&mut rest);
    let _ = srv.wait();
    rest.split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect()
}

/// Polls `check` every 100 ms until it holds; panics with `what` after `timeout`.
/// Waits until a line of the text `read` returns (a daemon's log) satisfies `wanted`;
/// returns that line, or panics with `what` and the whole text at the timeout.
pub fn wait_for_line(
    timeout: Duration,
    what: &str,
    read: impl Fn() -> String,
    wanted: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = read();
        if let Some(line) = text.lines().find(|l| wanted(l)) {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "never saw {what}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
