//! A routing table loaded over BGP: BIRD announces it to tern and we measure the time from
//! Established until every route is in tern's FIB, memory after the load, and an unrelated
//! flow through tern that must lose nothing meanwhile. Two anchors, measured the same way:
//! BIRD installing the same table into a namespace's kernel FIB, and a second BIRD taking
//! it over BGP in tern's place.
//!
//! ```text
//!  tern run:    A: BIRD 192.0.2.2 AS 65001 ── tern 192.0.2.1 AS 65000 (passive) ── B
//!               flow: B ──UDP 1 kpps──► A (a connected route, untouched by the load)
//!  anchor:      K: BIRD, kernel protocol ── k0 192.0.2.2/24 ══ veth ══ (an empty namespace)
//!  anchor:      S: BIRD 192.0.2.2 AS 65001 ══ veth ══ R: BIRD 192.0.2.1 AS 65000 (passive)
//! ```
//!
//! Both runs start from a BIRD whose static protocols already hold the table, with the
//! protocol under test disabled; the clock starts when it is enabled.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::{Duration, Instant};

use ipnet::{Ipv4Net, Ipv6Net};

use crate::bird::Bird;
use crate::{rss_kib, veth, Netns, Ports, Tern, TwoHosts, A4, A6};

/// The table to load.
pub struct Table {
    pub v4: Vec<Ipv4Net>,
    pub v6: Vec<Ipv6Net>,
}

impl Table {
    /// Every `every`-th prefix of the RIS 2026 IPv4 and IPv6 tables (1 = all of them).
    pub fn ris(every: usize) -> Result<Table, String> {
        Ok(Table {
            v4: crate::tables::sample(&crate::tables::ris_v4()?, every),
            v6: crate::tables::sample(&crate::tables::ris_v6()?, every),
        })
    }
}

/// BIRD installing the table into the kernel.
#[derive(Debug, Clone)]
pub struct KernelLoad {
    /// Kernel protocols enabled → every route exported to the kernel.
    pub seconds: f64,
    /// Routes in the namespace's kernel tables afterwards (`ip route show | wc -l`).
    pub kernel_v4: usize,
    pub kernel_v6: usize,
    pub bird_rss_kib: u64,
}

/// BIRD announcing the table to tern.
#[derive(Debug, Clone)]
pub struct TernLoad {
    /// BGP protocols enabled in BIRD → both sessions Established in tern.
    pub to_established: f64,
    /// First session Established → every route in tern's FIB.
    pub established_to_fib: f64,
    /// How the BGP RIB filled (`show bgp summary`), timed as BIRD's is.
    pub intake: Intake,
    /// CPU seconds per tern thread (summed per name) and the sending BIRD's, from enable
    /// to all installed.
    pub tern_cpu: std::collections::BTreeMap<String, f64>,
    pub sender_cpu: f64,
    /// Each session: Established → its last UPDATE read (tern's own measure; the later
    /// of the two sessions).
    pub established_to_last_update: f64,
    /// tern's eBGP routes in the FIB after the load.
    pub fib_v4: u64,
    pub fib_v6: u64,
    /// The FIB structures alone (`show fib`).
    pub fib_bytes: u64,
    pub tern_rss_before_kib: u64,
    pub tern_rss_after_kib: u64,
    pub bird_rss_kib: u64,
    /// The unrelated flow B → A during the load.
    pub flow_sent: u64,
    pub flow_received: u64,
}

const UDP_PORT: u16 = 47_000;

/// The share of the table that counts as the bulk of a feed. BIRD 2.0.12 sends all but its
/// last UPDATE at once and that one after its I/O loop's 3 s poll timeout (its log shows
/// the gap, to tern and to BIRD alike), so "everything received" measures where that
/// timer stood; the bulk measures the receivers.
const BULK: f64 = 0.999;

/// How a receiver's table filled during a feed, from polling it every [`POLL`].
#[derive(Debug, Clone, Copy)]
pub struct Intake {
    /// First session Established → [`BULK`] of the table received.
    pub bulk: f64,
    /// First session Established → the whole table received.
    pub all: f64,
}

const POLL: Duration = Duration::from_millis(20);

/// Polls `look` (is a session Established, how many prefixes are held) until the whole
/// `table` is held; returns when the first session was seen up, and the [`Intake`].
fn follow(
    table: usize,
    timeout: Duration,
    mut look: impl FnMut() -> Result<(bool, u64), String>,
) -> Result<(Instant, Intake), String> {
    let deadline = Instant::now() + timeout;
    let bulk_at = (table as f64 * BULK).ceil() as u64;
    let mut up = None;
    let mut bulk = None;
    loop {
        let (established, held) = look()?;
        let now = Instant::now();
        if established || held > 0 {
            up.get_or_insert(now);
        }
        if held >= bulk_at {
            bulk.get_or_insert(now);
        }
        if let (Some(up), Some(bulk), true) = (up, bulk, held >= table as u64) {
            let intake = Intake {
                bulk: bulk.duration_since(up).as_secs_f64(),
                all: now.duration_since(up).as_secs_f64(),
            };
            return Ok((up, intake));
        }
        if now > deadline {
            return Err(format!(
                "timed out after {timeout:?} with {held} of {table} prefixes received"
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// BIRD static protocols `s4` and `s6` holding the table, every route via `via4` / `via6`.
fn statics(t: &Table, via4: &str, via6: &str) -> String {
    let mut s = String::with_capacity((t.v4.len() + t.v6.len()) * 40);
    s.push_str("protocol static s4 {\n ipv4;\n");
    for p in &t.v4 {
        s.push_str(&format!(" route {p} via {via4};\n"));
    }
    s.push_str("}\nprotocol static s6 {\n ipv6;\n");
    for p in &t.v6 {
        s.push_str(&format!(" route {p} via {via6};\n"));
    }
    s.push_str("}\n");
    s
}

/// The number before `what` ("imported", "exported") in `show protocols all NAME`.
fn route_count(bird: &Bird, protocol: &str, what: &str) -> u64 {
    routes_in(&bird.cli(&format!("show protocols all {protocol}")), what)
}

/// The numbers before `what` on the `Routes:` lines of `show protocols all` output,
/// summed over the protocols it shows.
fn routes_in(out: &str, what: &str) -> u64 {
    out.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("Routes:")?;
            rest.split(',').find_map(|part| {
                let mut w = part.split_whitespace();
                let n = w.next()?.parse::<u64>().ok()?;
                (w.next()? == what).then_some(n)
            })
        })
        .sum()
}

/// Polls `done` every 50 ms until it holds, fails, or `timeout` passes (the harnesses'
/// `Result` form of [`crate::eventually`]).
pub(crate) fn wait_until(
    timeout: Duration,
    what: &str,
    mut done: impl FnMut() -> Result<bool, String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while !done()? {
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Waits until BIRD's static protocols hold the whole table.
fn wait_statics(bird: &Bird, t: &Table, timeout: Duration) -> Result<(), String> {
    wait_until(timeout, "BIRD to load the table", || {
        Ok(route_count(bird, "s4", "imported") >= t.v4.len() as u64
            && route_count(bird, "s6", "imported") >= t.v6.len() as u64)
    })
}

fn count_lines(ns: &Netns, args: &[&str]) -> usize {
    let out = ns.exec(args);
    out.stdout.iter().filter(|&&b| b == b'\n').count()
}

/// The anchor: BIRD exports the table to the kernel FIB of its namespace.
pub fn kernel_anchor(t: &Table, timeout: Duration) -> Result<KernelLoad, String> {
    let k = Netns::new("bk");
    let peer = Netns::new("bx");
    veth(&k, "k0", &peer, "x0", 1);
    peer.ok(&["ip", "link", "set", "x0", "up"]);
    k.ok(&["ip", "link", "set", "k0", "up"]);
    k.ok(&["ip", "addr", "add", "192.0.2.2/24", "dev", "k0"]);
    k.ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:a::2/64",
        "dev",
        "k0",
        "nodad",
    ]);
    // Older kernels cap the IPv6 FIB at 4096 routes per namespace by default.
    let _ = k.exec(&["sysctl", "-qw", "net.ipv6.route.max_size=4000000"]);
    let config = format!(
        "router id 192.0.2.2;\nprotocol device {{}}\n{}\
         protocol kernel k4 {{ disabled; ipv4 {{ export all; }}; }}\n\
         protocol kernel k6 {{ disabled; ipv6 {{ export all; }}; }}\n",
        statics(t, "192.0.2.1", "2001:db8:a::1")
    );
    let bird = Bird::start(&k, &config);
    wait_statics(&bird, t, timeout)?;
    let start = Instant::now();
    bird.cli("enable k4");
    bird.cli("enable k6");
    wait_until(timeout, "BIRD to export the table to the kernel", || {
        Ok(route_count(&bird, "k4", "exported") >= t.v4.len() as u64
            && route_count(&bird, "k6", "exported") >= t.v6.len() as u64)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(KernelLoad {
        seconds,
        kernel_v4: count_lines(&k, &["ip", "-4", "route", "show"]),
        kernel_v6: count_lines(&k, &["ip", "-6", "route", "show"]),
        bird_rss_kib: rss_kib(bird.pid()),
    })
}

/// BIRD receiving the table from another BIRD.
#[derive(Debug, Clone)]
pub struct BirdLoad {
    /// First session Established at the receiver → every route imported there.
    pub intake: Intake,
    /// CPU seconds the receiving and the sending BIRD used from enable to all received.
    pub receiver_cpu: f64,
    pub sender_cpu: f64,
    pub imported_v4: u64,
    pub imported_v6: u64,
    pub receiver_rss_kib: u64,
}

/// The intake anchor: the sender of [`tern_load`] (same config, same table) announces to a
/// second BIRD in place of tern, over a veth with default offloads; the receiver imports
/// everything and exports nowhere, so the time is reading, decoding and storing the
/// UPDATEs, as tern's is. The same 1 000 datagram/s flow runs meanwhile (between the two
/// namespaces), so both runs share the machine with the same background load.
pub fn bird_anchor(t: &Table, timeout: Duration) -> Result<BirdLoad, String> {
    let s = Netns::new("bs");
    let r = Netns::new("br");
    veth(&s, "s0", &r, "r0", 1);
    for (ns, dev, v4, v6) in [
        (&s, "s0", "192.0.2.2/24", "2001:db8:a::2/64"),
        (&r, "r0", "192.0.2.1/24", "2001:db8:a::1/64"),
    ] {
        ns.ok(&["ip", "link", "set", dev, "up"]);
        ns.ok(&["ip", "addr", "add", v4, "dev", dev]);
        ns.ok(&["ip", "-6", "addr", "add", v6, "dev", dev, "nodad"]);
    }
    let sender = Bird::start(&s, &bird_config(t));
    let receiver = Bird::start(
        &r,
        "router id 192.0.2.1;\nprotocol device {}\n\
         protocol bgp from4 { local 192.0.2.1 as 65000; neighbor 192.0.2.2 as 65001; passive; \
           ipv4 { import all; export none; }; }\n\
         protocol bgp from6 { local 2001:db8:a::1 as 65000; neighbor 2001:db8:a::2 as 65001; \
           passive; ipv6 { import all; export none; }; }\n",
    );
    wait_statics(&sender, t, timeout)?;
    // The same background load as tern's run: a 1 000 datagram/s flow between the two.
    let flow = Flow::start(&s, "192.0.2.2", &r)?;
    sender.cli("enable tern4");
    sender.cli("enable tern6");
    let cpu = |b: &Bird| crate::thread_cpu_ns(b.pid()).values().sum::<u64>() as f64 / 1e9;
    let (receiver_before, sender_before) = (cpu(&receiver), cpu(&sender));
    // One `birdc` call per look: both protocols' states and import counts.
    let (_, intake) = follow(t.v4.len() + t.v6.len(), timeout, || {
        let out = receiver.cli("show protocols all \"from*\"");
        Ok((out.contains("Established"), routes_in(&out, "imported")))
    })?;
    let receiver_cpu = cpu(&receiver) - receiver_before;
    let sender_cpu = cpu(&sender) - sender_before;
    flow.stop()?;
    Ok(BirdLoad {
        intake,
        receiver_cpu,
        sender_cpu,
        imported_v4: route_count(&receiver, "from4", "imported"),
        imported_v6: route_count(&receiver, "from6", "imported"),
        receiver_rss_kib: rss_kib(receiver.pid()),
    })
}

/// tern's side: passive sessions for A's BIRD, one per family, everything imported.
fn tern_config() -> String {
    let peer = |name: &str, addr: &str| {
        format!(
            "[[bgp.peer]]\nname = \"{name}\"\naddress = \"{addr}\"\nremote_as = 65001\n\
             passive = true\nimport = \"all\"\n"
        )
    };
    format!(
        "[bgp]\nrouter_id = \"192.0.2.1\"\nlocal_as = 65000\n{}{}",
        peer("a4", A4),
        peer("a6", A6)
    )
}

fn bird_config(t: &Table) -> String {
    format!(
        "router id 192.0.2.2;\nprotocol device {{}}\n{}\
         protocol bgp tern4 {{ disabled; local 192.0.2.2 as 65001; neighbor 192.0.2.1 as 65000; \
           connect delay time 1; ipv4 {{ import none; export all; }}; }}\n\
         protocol bgp tern6 {{ disabled; local 2001:db8:a::2 as 65001; neighbor 2001:db8:a::1 as 65000; \
           connect delay time 1; ipv6 {{ import none; export all; }}; }}\n",
        statics(t, A4, A6)
    )
}

/// A UDP flow B → A at about 1000 datagrams/s, counted at both ends.
struct Flow {
    receiver: Child,
    sender: Child,
}

impl Flow {
    /// From a sender in `from` to a receiver in `to` listening on `to_addr`.
    fn start(to: &Netns, to_addr: &str, from: &Netns) -> Result<Flow, String> {
        let receiver_py = format!(
            "import signal,socket,sys\nn=[0]\n\
             def done(*_):\n print(n[0],flush=True); sys.exit(0)\n\
             signal.signal(signal.SIGTERM,done)\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',{UDP_PORT}))\n\
             print('ready',flush=True)\n\
             while True:\n s.recv(2048); n[0]+=1\n"
        );
        let sender_py = format!(
            "import signal,socket,time\nn=[0]; stop=[False]\n\
             signal.signal(signal.SIGTERM,lambda *_: stop.__setitem__(0,True))\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             while not stop[0]:\n s.sendto(b'x'*64,('{to_addr}',{UDP_PORT})); n[0]+=1; time.sleep(0.001)\n\
             print(n[0],flush=True)\n"
        );
        let mut receiver = to.spawn(&["python3", "-c", &receiver_py]);
        let mut ready = String::new();
        if let Some(out) = receiver.stdout.as_mut() {
            let _ = BufReader::new(out).read_line(&mut ready);
        }
        if ready.trim() != "ready" {
            let _ = receiver.kill();
            let _ = receiver.wait();
            return Err("the flow's receiver did not start".into());
        }
        let sender = from.spawn(&["python3", "-c", &sender_py]);
        Ok(Flow { receiver, sender })
    }

    /// Stops the sender, lets the last datagrams arrive, stops the receiver:
    /// (sent, received).
    fn stop(self) -> Result<(u64, u64), String> {
        fn count(child: Child) -> Result<u64, String> {
            // SAFETY: signalling a process this harness spawned, by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let out = child.wait_with_output().map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout);
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .next_back()
                .ok_or_else(|| {
                    format!(
                        "no count from the flow: {text} {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
        }
        let sent = count(self.sender)?;
        std::thread::sleep(Duration::from_millis(500));
        let received = count(self.receiver)?;
        Ok((sent, received))
    }
}

/// tern's eBGP routes in the FIB: (IPv4, IPv6).
pub fn ebgp_routes(tern: &Tern) -> Result<(u64, u64), String> {
    let f = tern.try_ctl(&["show", "fib"])?;
    Ok((
        f["ipv4_by_source"]["ebgp"].as_u64().unwrap_or(0),
        f["ipv6_by_source"]["ebgp"].as_u64().unwrap_or(0),
    ))
}

/// Memory of both FIB structures (`show fib`).
fn fib_bytes(tern: &Tern) -> Result<u64, String> {
    let f = tern.try_ctl(&["show", "fib"])?;
    Ok(f["ipv4_bytes"].as_u64().unwrap_or(0) + f["ipv6_bytes"].as_u64().unwrap_or(0))
}

/// BIRD announces the table to tern; see the module docs.
pub fn tern_load(t: &Table, timeout: Duration) -> Result<TernLoad, String> {
    let net = TwoHosts::with(Ports::AfXdp, &tern_config(), 1500);
    let bird = Bird::start(&net.a, &bird_config(t));
    wait_statics(&bird, t, timeout)?;
    // Resolve A and B before the flow starts: the first datagrams must not wait for ARP.
    for family in ["-4", "-6"] {
        let to = if family == "-4" { A4 } else { A6 };
        let warm = crate::ping(&net.b, &[family, "-c", "2", "-i", "0.2", "-W", "2", to]);
        if !warm.contains(" 0% packet loss") {
            return Err(format!("B cannot reach A through tern: {warm}"));
        }
    }
    let tern_pid = net.tern.pid().ok_or("tern is not running")?;
    let tern_rss_before_kib = rss_kib(tern_pid);
    let flow = Flow::start(&net.a, A4, &net.b)?;

    let cpu_s = |pid| {
        crate::thread_cpu_ns(pid)
            .into_iter()
            .map(|(n, ns)| (n, ns as f64 / 1e9))
    };
    let tern_cpu_before: std::collections::BTreeMap<String, f64> = cpu_s(tern_pid).collect();
    let sender_cpu_before: f64 = cpu_s(bird.pid()).map(|(_, s)| s).sum();
    let start = Instant::now();
    bird.cli("enable tern4");
    bird.cli("enable tern6");
    // The BGP RIB's fill (what BIRD's receiver is timed on), from the speaker; then the
    // FIB's, from the control plane.
    let mut both_up = None;
    let followed = follow(t.v4.len() + t.v6.len(), timeout, || {
        let s = net.tern.try_ctl(&["show", "bgp", "summary"])?;
        let peers = s["peers"].as_array().cloned().unwrap_or_default();
        let up = peers.iter().filter(|p| p["state"] == "Established").count();
        if up == peers.len() && up > 0 {
            both_up.get_or_insert_with(Instant::now);
        }
        let held = peers
            .iter()
            .map(|p| {
                p["prefixes_ipv4"].as_u64().unwrap_or(0) + p["prefixes_ipv6"].as_u64().unwrap_or(0)
            })
            .sum();
        Ok((up > 0, held))
    });
    let installed = followed.as_ref().map_err(Clone::clone).and_then(|_| {
        wait_until(timeout, "tern to install the table", || {
            let (n4, n6) = ebgp_routes(&net.tern)?;
            Ok(n4 >= t.v4.len() as u64 && n6 >= t.v6.len() as u64)
        })
    });
    let done = Instant::now();
    let mut tern_cpu: std::collections::BTreeMap<String, f64> = cpu_s(tern_pid).collect();
    for (name, seconds) in &mut tern_cpu {
        *seconds -= tern_cpu_before.get(name).copied().unwrap_or(0.0);
    }
    tern_cpu.retain(|_, s| *s >= 0.01);
    let sender_cpu = cpu_s(bird.pid()).map(|(_, s)| s).sum::<f64>() - sender_cpu_before;
    let (flow_sent, flow_received) = flow.stop()?;
    let ((first_up, intake), ()) = followed.and_then(|f| Ok((f, installed?))).map_err(|e| {
        format!(
            "tern did not take the table: {e}: {:?} in the FIB (BIRD: {})",
            ebgp_routes(&net.tern),
            bird.cli("show protocols")
        )
    })?;
    let (fib_v4, fib_v6) = ebgp_routes(&net.tern)?;
    if let Some(secs) = std::env::var("TERN_BENCH_HOLD")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        // For looking inside a loaded tern (gdb, /proc): keep everything up a while.
        eprintln!("holding {secs} s; tern is pid {tern_pid}");
        std::thread::sleep(Duration::from_secs(secs));
    }
    let both_up = both_up.unwrap_or(done);
    let mut established_to_last_update: f64 = 0.0;
    for name in ["a4", "a6"] {
        let n = net.tern.try_ctl(&["show", "bgp", "neighbors", name])?;
        let ms = n["neighbors"][0]["established_to_last_update_ms"]
            .as_u64()
            .ok_or_else(|| format!("{name}: no UPDATE read: {n}"))?;
        established_to_last_update = established_to_last_update.max(ms as f64 / 1000.0);
    }
    // Memory "after the load": once the control plane has gone quiet (it trims the heap
    // after 100 ms without route changes), as BIRD's is read after its export finished.
    std::thread::sleep(Duration::from_secs(1));
    Ok(TernLoad {
        to_established: both_up.duration_since(start).as_secs_f64(),
        established_to_fib: done.duration_since(first_up).as_secs_f64(),
        intake,
        tern_cpu,
        sender_cpu,
        established_to_last_update,
        fib_v4,
        fib_v6,
        fib_bytes: fib_bytes(&net.tern)?,
        tern_rss_before_kib,
        tern_rss_after_kib: rss_kib(tern_pid),
        bird_rss_kib: rss_kib(bird.pid()),
        flow_sent,
        flow_received,
    })
}
