//! `tern-bench`: tern against the kernel, a bare AF_XDP floor and tern over TAP, on the same
//! veth wires, interleaved rounds, medians with min–max. Needs root (namespaces, XDP).
//!
//! ```text
//! tern-bench run                    # 150 kpps + saturation, 5 rounds, all modes
//! tern-bench run --table ris        # the same with the RIS 2026 IPv4 table in every FIB
//! tern-bench run --rfc2544 64,128,512,1518
//! tern-bench run --smoke            # CI: a few seconds per mode, checks delivered == forwarded
//! ```

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use testbed::bench::harness::{self, Mode, Pipeline, Wires};
use testbed::bench::report::{self, Trial};
use testbed::bench::{destinations, floor, gen, Progress, Session};

#[derive(Parser)]
#[command(name = "tern-bench", about = "forwarding throughput harness")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the wires, run every mode, write the report.
    Run(RunArgs),
    /// BIRD announces a table to tern over BGP: Established → every route in the FIB, memory,
    /// an unrelated flow's loss; against BIRD installing it into the kernel (the anchor).
    BgpLoad(BgpLoadArgs),
    /// A scripted peer loads the RIS table into tern, then replays the RIS 24 h update
    /// streams as fast as TCP takes them: updates/s reaching the FIB, KEEPALIVEs meanwhile.
    BgpChurn(BgpChurnArgs),
    /// (internal) the traffic generator, run in the generator's namespace.
    Gen {
        #[arg(long)]
        ifname: String,
        #[arg(long)]
        destinations: PathBuf,
        #[arg(long, default_value_t = 60)]
        frame_len: usize,
        #[arg(long, default_value_t = 0)]
        rate: u64,
        #[arg(long)]
        seconds: f64,
    },
    /// (internal) the bare AF_XDP forwarder, run in the DUT's namespace.
    Floor {
        #[arg(long)]
        a: String,
        #[arg(long)]
        b: String,
        #[arg(long)]
        next_hop: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Modes, comma-separated: kernel, tern-afxdp, tern-tap, floor, dpdk-l3fwd (which needs
    /// `bash .ci/install-deps --bench`).
    #[arg(long, default_value = "kernel,tern-afxdp,tern-tap,floor,dpdk-l3fwd")]
    modes: String,
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per trial.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// The fixed rate (frames/s) every mode is measured at: below what the kernel forwards
    /// with the full table on this machine (~0.28 Mpps).
    #[arg(long, default_value_t = 150_000)]
    rate: u64,
    #[arg(long, default_value_t = 1024)]
    flows: usize,
    /// Frame size with FCS (64 = 60 bytes on the wire of a software interface).
    #[arg(long, default_value_t = 64)]
    frame: usize,
    /// Skip the saturation series.
    #[arg(long)]
    no_saturation: bool,
    /// `ris`: the RIS 2026 IPv4 table (testbed/data) in every FIB, flows over all of it;
    /// or a file of prefixes.
    #[arg(long)]
    table: Option<String>,
    /// What the forwarders do besides routing: plain, snat (masquerade, one session per
    /// flow), gre (encapsulate towards the sink). Modes that cannot are left out.
    #[arg(long, default_value = "plain")]
    pipeline: String,
    /// RFC 2544 throughput (binary search for zero loss) at these frame sizes.
    #[arg(long, value_delimiter = ',')]
    rfc2544: Vec<usize>,
    /// Where the report goes (bench.txt, bench.md, bench.json, bench.svg).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// CI smoke: kernel, tern-afxdp, tern-tap and floor, 1 round of 2 s at 20 000 frames/s,
    /// no saturation; fails unless every
    /// tern mode delivered what it forwarded and forwarded what was offered.
    #[arg(long)]
    smoke: bool,
}

#[derive(clap::Args)]
struct BgpLoadArgs {
    /// Every Nth prefix of the RIS 2026 tables (1 = the full 1.04 M IPv4 + 246 k IPv6).
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// Rounds; each runs the kernel anchor, the BIRD anchor, then tern.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Give up on a load after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

#[derive(clap::Args)]
struct BgpChurnArgs {
    /// Every Nth prefix of the RIS 2026 tables as the starting table.
    #[arg(long, default_value_t = 1)]
    every: usize,
    /// The first N updates of each stream (0 = all: 1.39 M IPv4 + 1.24 M IPv6).
    #[arg(long, default_value_t = 0)]
    updates: usize,
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad MAC {s}"))?;
    v.try_into().map_err(|_| format!("bad MAC {s}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => run(args),
        Cmd::BgpLoad(args) => bgp_load(args),
        Cmd::BgpChurn(args) => bgp_churn(args),
        Cmd::Gen {
            ifname,
            destinations,
            frame_len,
            rate,
            seconds,
        } => (|| {
            let text = std::fs::read_to_string(&destinations).map_err(|e| e.to_string())?;
            let destinations: Vec<Ipv4Addr> =
                text.lines().filter_map(|l| l.trim().parse().ok()).collect();
            let spec = gen::Spec {
                ifname,
                src_mac: harness::GEN_MAC,
                dst_mac: harness::DUT_A_MAC,
                src: harness::GEN_IP,
                destinations,
                frame_len: frame_len.saturating_sub(4).max(60),
                rate,
                duration: Duration::from_secs_f64(seconds),
            };
            let sent = gen::run(&spec).map_err(|e| e.to_string())?;
            println!("{sent}");
            Ok(())
        })(),
        Cmd::Floor { a, b, next_hop } => (|| {
            let spec = floor::Spec {
                a,
                b,
                mac_a: harness::DUT_A_MAC,
                mac_b: harness::DUT_B_MAC,
                next_hop: mac(&next_hop)?,
                burst: 64,
            };
            let n = floor::run(&spec).map_err(|e| e.to_string())?;
            println!("{n}");
            Ok(())
        })(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `ris`: the RIS IPv4 table next to the repository; otherwise a file of prefixes.
fn load_table(which: &str) -> Result<Vec<ipnet::Ipv4Net>, String> {
    if which == "ris" {
        testbed::tables::ris_v4()
    } else {
        testbed::tables::v4_file(which)
    }
}

fn run(mut a: RunArgs) -> Result<(), String> {
    if a.smoke {
        // CI installs no DPDK.
        a.modes = "kernel,tern-afxdp,tern-tap,floor".into();
        a.rounds = 1;
        a.seconds = 2.0;
        a.rate = 20_000;
        a.no_saturation = true;
        a.rfc2544.clear();
    }
    let pipeline = Pipeline::parse(&a.pipeline).ok_or(format!(
        "unknown pipeline {} (plain, snat, gre)",
        a.pipeline
    ))?;
    let mut modes: Vec<Mode> = a
        .modes
        .split(',')
        .map(|m| Mode::parse(m.trim()).ok_or(format!("unknown mode {m}")))
        .collect::<Result<_, _>>()?;
    modes.retain(|&m| {
        let ok = pipeline.supports(m);
        if !ok {
            eprintln!(
                "{}: cannot run the {} pipeline here, left out",
                m.name(),
                pipeline.name()
            );
        }
        ok
    });
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let table = a.table.as_deref().map(load_table).transpose()?;
    eprintln!(
        "building wires{}",
        table
            .as_ref()
            .map(|t| format!(" ({} routes)", t.len()))
            .unwrap_or_default()
    );
    let wires = Wires::new(table.as_deref(), pipeline);
    let dest_file = wires.dir.join("destinations.txt");
    let dests = destinations(a.flows, table.as_deref(), 0x7e5a_11ce);
    std::fs::write(
        &dest_file,
        dests.iter().map(|d| format!("{d}\n")).collect::<String>(),
    )
    .map_err(|e| e.to_string())?;

    let mut series: Vec<(String, u64)> = vec![(format!("{}kpps", a.rate / 1000), a.rate)];
    if !a.no_saturation {
        series.push(("saturation".into(), 0));
    }
    let mut progress = Progress {
        done: 0,
        total: series.len() * a.rounds * modes.len() + a.rfc2544.len() * modes.len(),
    };
    let mut trials: Vec<Trial> = Vec::new();
    for (name, rate) in &series {
        for round in 0..a.rounds {
            for &mode in &modes {
                let s = Session::start(&wires, &exe, mode, &dest_file)?;
                let t = s.trial(name, round, a.frame, *rate, a.seconds);
                s.stop();
                trials.push(t?);
                progress.step(&format!("{name} round {} {}", round + 1, mode.name()));
            }
        }
    }
    for &size in &a.rfc2544 {
        for &mode in &modes {
            let t = rfc2544(&wires, &exe, mode, &dest_file, size, a.seconds)?;
            trials.push(t);
            progress.step(&format!("rfc2544 {size} {}", mode.name()));
        }
    }

    let rows = report::summarize(&trials);
    let text = report::table(&rows);
    print!("{text}");
    let setup = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "frame": a.frame, "flows": a.flows, "pipeline": pipeline.name(), "seconds": a.seconds, "rounds": a.rounds,
        "table_routes": table.as_ref().map(|t| t.len()),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "wires": "veth pairs (AF_XDP copy mode: veth has no zero-copy)",
    });
    std::fs::create_dir_all(&a.out).map_err(|e| e.to_string())?;
    let write = |name: &str, body: String| {
        std::fs::write(a.out.join(name), body).map_err(|e| format!("{name}: {e}"))
    };
    write("bench.txt", text.clone())?;
    write(
        "bench.json",
        serde_json::to_string_pretty(&report::to_json(&trials, &rows, setup)).unwrap_or_default(),
    )?;
    write("bench.svg", report::svg(&rows))?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    write("bench.md", report::markdown(&rows, &command))?;
    eprintln!("report: {}/bench.{{txt,md,json,svg}}", a.out.display());
    if a.smoke {
        for t in trials.iter().filter(|t| t.mode.is_tern()) {
            let tern_tx = t.tern_tx.unwrap_or(0);
            if t.delivered != t.forwarded || t.forwarded != t.offered || tern_tx != t.forwarded {
                return Err(format!(
                    "smoke: {} offered {} forwarded {} (tern says {tern_tx}) delivered {}",
                    t.mode.name(),
                    t.offered,
                    t.forwarded,
                    t.delivered
                ));
            }
        }
        eprintln!("smoke: every tern mode delivered all it was offered");
    }
    Ok(())
}

fn bgp_load(a: BgpLoadArgs) -> Result<(), String> {
    use testbed::bgp_load::{bird_anchor, kernel_anchor, tern_load, Table};
    let table = Table::ris(a.every)?;
    let timeout = Duration::from_secs(a.timeout);
    eprintln!(
        "table: {} IPv4 + {} IPv6 prefixes",
        table.v4.len(),
        table.v6.len()
    );
    let mut kernel = Vec::new();
    let mut bird = Vec::new();
    let mut tern = Vec::new();
    for round in 1..=a.rounds {
        eprintln!("round {round}/{}: BIRD → kernel", a.rounds);
        let k = kernel_anchor(&table, timeout)?;
        eprintln!("  {k:?}");
        eprintln!("round {round}/{}: BIRD → BIRD", a.rounds);
        let b = bird_anchor(&table, timeout)?;
        eprintln!("  {b:?}");
        eprintln!("round {round}/{}: BIRD → tern", a.rounds);
        let t = tern_load(&table, timeout)?;
        eprintln!("  {t:?}");
        kernel.push(k);
        bird.push(b);
        tern.push(t);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let kernel_s = median(kernel.iter().map(|k| k.seconds).collect());
    let tern_fib = median(tern.iter().map(|t| t.established_to_fib).collect());
    let tern_bulk = median(tern.iter().map(|t| t.intake.bulk).collect());
    let tern_all = median(tern.iter().map(|t| t.intake.all).collect());
    let tern_read = median(tern.iter().map(|t| t.established_to_last_update).collect());
    let bird_bulk = median(bird.iter().map(|b| b.intake.bulk).collect());
    let bird_all = median(bird.iter().map(|b| b.intake.all).collect());
    let last_b = bird.last().ok_or("no rounds")?;
    let last_k = kernel.last().ok_or("no rounds")?;
    let last_t = tern.last().ok_or("no rounds")?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let text = format!(
        "`{command}` ({} IPv4 + {} IPv6 prefixes, {} round(s), medians)\n\n\
         | | 99.9 % received | all received | all in a FIB | routes | memory (RSS) |\n\
         |---|---|---|---|---|---|\n\
         | BIRD → kernel (anchor) | | | {kernel_s:.2} s (enable → all exported) | {} v4 + {} v6 (`ip route`) | BIRD {:.0} MiB |\n\
         | BIRD → BIRD (anchor) | {bird_bulk:.2} s | {bird_all:.2} s | (exports nowhere) | {} v4 + {} v6 imported | receiving BIRD {:.0} MiB |\n\
         | BIRD → tern | {tern_bulk:.2} s | {tern_all:.2} s (last UPDATE read: {tern_read:.2} s) | {tern_fib:.2} s | {} v4 + {} v6 (`show fib`) | tern {:.0} MiB (was {:.0}; FIB structures {:.0} MiB), BIRD {:.0} MiB |\n\n\
         Times from the first session Established, receivers polled every 20 ms. \
         tern / receiving BIRD: {:.2}× to 99.9 % received, {:.2}× to all received; \
         tern / kernel to all in a FIB: {:.2}×. Sessions up {:.2} s after enable. \
         Unrelated flow B → A during the load: {} sent, {} received.\n\n\
         CPU seconds from enable (last round): receiving BIRD {:.2}, its sender {:.2}; \
         tern {:.2} ({}), its sender {:.2}.\n",
        table.v4.len(),
        table.v6.len(),
        a.rounds,
        last_k.kernel_v4,
        last_k.kernel_v6,
        mib(last_k.bird_rss_kib),
        last_b.imported_v4,
        last_b.imported_v6,
        mib(last_b.receiver_rss_kib),
        last_t.fib_v4,
        last_t.fib_v6,
        mib(last_t.tern_rss_after_kib),
        mib(last_t.tern_rss_before_kib),
        last_t.fib_bytes as f64 / 1048576.0,
        mib(last_t.bird_rss_kib),
        tern_bulk / bird_bulk,
        tern_all / bird_all,
        tern_fib / kernel_s,
        median(tern.iter().map(|t| t.to_established).collect()),
        last_t.flow_sent,
        last_t.flow_received,
        last_b.receiver_cpu,
        last_b.sender_cpu,
        last_t.tern_cpu.values().sum::<f64>(),
        last_t
            .tern_cpu
            .iter()
            .map(|(name, s)| format!("{name} {s:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        last_t.sender_cpu,
    );
    print!("{text}");
    std::fs::create_dir_all(&a.out).map_err(|e| e.to_string())?;
    std::fs::write(a.out.join("bgp-load.md"), &text).map_err(|e| e.to_string())?;
    let lost = tern
        .iter()
        .map(|t| t.flow_sent.saturating_sub(t.flow_received))
        .sum::<u64>();
    if lost > 0 {
        return Err(format!(
            "the unrelated flow lost {lost} datagrams during the load"
        ));
    }
    Ok(())
}

fn bgp_churn(a: BgpChurnArgs) -> Result<(), String> {
    use testbed::bgp_load::Table;
    use testbed::tables;
    let table = Table::ris(a.every)?;
    let take = |mut v: Vec<tables::Update>| {
        if a.updates > 0 {
            v.truncate(a.updates);
        }
        v
    };
    let mut updates = take(tables::ris_updates(false)?);
    updates.extend(take(tables::ris_updates(true)?));
    eprintln!(
        "table {} IPv4 + {} IPv6, {} updates",
        table.v4.len(),
        table.v6.len(),
        updates.len()
    );
    let r = testbed::bgp_churn::replay(&table, &updates, Duration::from_secs(a.timeout))?;
    eprintln!("{r:?}");
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let text = format!(
        "`{command}`\n\n\
         | | |\n|---|---|\n\
         | initial table ({} IPv4 + {} IPv6) Established → FIB | {:.2} s |\n\
         | updates replayed (in {} UPDATE messages) | {} |\n\
         | sent in | {:.2} s |\n\
         | all in the FIB after | {:.2} s → **{:.0} updates/s** |\n\
         | FIB after the stream (expected) | {} v4 ({}) + {} v6 ({}) |\n\
         | tern KEEPALIVEs, longest silence (hold time) | {}, {:.2} s ({} s) |\n\
         | session Established at the end, NOTIFICATION | {}, {} |\n\
         | tern RSS after | {:.0} MiB |\n",
        table.v4.len(),
        table.v6.len(),
        r.table_seconds,
        r.messages,
        r.updates,
        r.send_seconds,
        r.fib_seconds,
        r.updates_per_second(),
        r.fib_v4,
        r.expected_v4,
        r.fib_v6,
        r.expected_v6,
        r.keepalives,
        r.max_gap.as_secs_f64(),
        r.hold_time,
        r.established_after,
        r.notification.as_deref().unwrap_or("none"),
        r.tern_rss_kib as f64 / 1024.0,
    );
    print!("{text}");
    std::fs::create_dir_all(&a.out).map_err(|e| e.to_string())?;
    std::fs::write(a.out.join("bgp-churn.md"), &text).map_err(|e| e.to_string())?;
    if (r.fib_v4, r.fib_v6) != (r.expected_v4, r.expected_v6) || !r.established_after {
        return Err("the FIB does not match the stream, or the session dropped".into());
    }
    Ok(())
}

/// RFC 2544 throughput: the highest rate with zero loss over a trial, by binary search
/// between 0 and what the mode forwards at saturation (7 halvings: within 1%).
fn rfc2544(
    wires: &Wires,
    exe: &std::path::Path,
    mode: Mode,
    dest: &std::path::Path,
    size: usize,
    seconds: f64,
) -> Result<Trial, String> {
    let s = Session::start(wires, exe, mode, dest)?;
    let result = (|| {
        let sat = s.trial(&format!("rfc2544-{size}"), 0, size, 0, seconds)?;
        let (mut lo, mut hi) = (0u64, (sat.forwarded as f64 / seconds) as u64 + 1);
        let mut best: Option<Trial> = None;
        for _ in 0..7 {
            let rate = (lo + hi) / 2;
            if rate == 0 {
                break;
            }
            let t = s.trial(&format!("rfc2544-{size}"), 0, size, rate, seconds)?;
            if t.delivered >= t.offered {
                lo = rate;
                best = Some(t);
            } else {
                hi = rate;
            }
        }
        best.ok_or_else(|| format!("{}: no zero-loss rate found at {size} bytes", mode.name()))
    })();
    s.stop();
    result
}
