//! The `tern` binary: `run`, `check-config`, `ctl`.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use dataplane::config::Config;
use dataplane::router::Router;
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "tern",
    about = "a userspace packet-forwarding router dataplane",
    version
)]
struct Cli {
    /// Log lines as text (colour only at a terminal) or as one JSON object each.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: dataplane::logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router (the embedded default configuration unless --config is given).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and exit.
    CheckConfig { file: PathBuf },
    /// Talk to a running tern: `tern ctl help` lists the commands; keywords may be
    /// shortened to a unique prefix (`sh bgp sum`).
    Ctl {
        /// The ctl socket ([control] socket of the tern to talk to).
        #[arg(long, env = "TERN_SOCKET", default_value = "/run/tern/tern.sock")]
        socket: PathBuf,
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
        #[arg(required = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

static STOP: AtomicBool = AtomicBool::new(false);
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    dataplane::logging::init(cli.log_format);
    match cli.command {
        Command::Run { config } => run(config),
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} interfaces, {} routes, {} neighbors)",
                    file.display(),
                    c.interfaces.len(),
                    c.routes.len(),
                    c.neighbors.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Ctl {
            socket,
            json,
            mut words,
        } => {
            // `--json` may also come last, as in `tern ctl show counters --json`.
            let json = json || words.iter().any(|w| w == "--json");
            words.retain(|w| w != "--json");
            let words = match dataplane::commands::expand(&words) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("tern ctl: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match words.first().map(String::as_str) {
                Some("help") => {
                    print!("{}", dataplane::commands::help());
                    ExitCode::SUCCESS
                }
                Some("capture") => capture(&socket, &words[1..]),
                _ => ctl(&socket, &words, json),
            }
        }
    }
}

fn run(path: Option<PathBuf>) -> ExitCode {
    let config = match path {
        Some(p) => match Config::load(&p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => Config::default_config(),
    };
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    // SIGHUP (a closed terminal, or an operator asking for a reload) must not end a
    // router: by default it terminates the process, socket file left behind.
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t) };
    let router = match Router::start(&config, true) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tern: {e}");
            return ExitCode::FAILURE;
        }
    };
    while !STOP.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        if HANGUP.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "SIGHUP: tern does not reload its configuration; still running with the one \
                 it started with (restart to apply a changed file)"
            );
        }
    }
    tracing::info!("stopping");
    router.stop();
    ExitCode::SUCCESS
}

/// `tern ctl capture PORT [rx|tx|both] [--count N] [--seconds S] [--filter EXPR] -w FILE|-`:
/// a pcap of what the port received and sent, into FILE or, with `-`, to stdout as it
/// comes (`| tshark -r -`). The frame count goes to stderr at the end.
fn capture(socket: &std::path::Path, args: &[String]) -> ExitCode {
    let mut request = Vec::new();
    let mut output = None;
    let mut args = args.iter();
    while let Some(a) = args.next() {
        let value = |flag: &str, v: Option<&String>| {
            v.cloned().ok_or_else(|| format!("{flag} needs a value"))
        };
        let step = match a.as_str() {
            "-w" => value("-w", args.next()).map(|v| output = Some(v)),
            "--count" | "--seconds" | "--filter" => value(a, args.next()).map(|v| {
                request.push(a.trim_start_matches("--").to_string());
                request.push(v);
            }),
            _ => {
                request.push(a.clone());
                Ok(())
            }
        };
        if let Err(e) = step {
            eprintln!("tern ctl capture: {e}");
            return ExitCode::FAILURE;
        }
    }
    let Some(output) = output else {
        eprintln!("tern ctl capture: -w FILE (or -w - for stdout) is required");
        return ExitCode::FAILURE;
    };
    let out: Box<dyn std::io::Write> = if output == "-" {
        // Unbuffered, so that each frame reaches a live reader at once.
        match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Box::new(std::fs::File::from(fd)),
            Err(e) => {
                eprintln!("tern ctl capture: stdout: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        match std::fs::File::create(&output) {
            // Unbuffered too: a capture ended with Ctrl-C keeps every frame it got.
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("tern ctl capture: {output}: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    match dataplane::capture::stream::receive(socket, &request, out) {
        Ok(frames) => {
            eprintln!("{frames} frames captured");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tern ctl capture: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tern ctl WORDS`: the answer printed as a table (or JSON with `json`); a listing is
/// printed row by row as it arrives. A reader that stops early (`| head`) closes the
/// pipe: that ends the output, quietly.
fn ctl(socket: &std::path::Path, words: &[String], json: bool) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut rows = 0u64;
    let listing = Listing::of(words);
    let answer = dataplane::ctl::request_streaming(socket, words, |row| {
        if json {
            let sep = if rows == 0 {
                format!("{{\"{}\": [\n", listing.key())
            } else {
                ",\n".into()
            };
            write!(out, "{sep}{row}")?;
        } else {
            if rows == 0 {
                out.write_all(listing.header().as_bytes())?;
            }
            out.write_all(listing.line(&row).as_bytes())?;
        }
        rows += 1;
        Ok(())
    });
    let printed = match answer {
        Ok(v) => match v.get("stream_end") {
            Some(end) if end.get("stopped").is_some() => Ok(()),
            Some(end) if json => {
                // The rows, then the last line's fields (count, FIB or shard counters).
                let open = if rows == 0 {
                    format!("{{\"{}\": [", listing.key())
                } else {
                    "\n".into()
                };
                let rest: Vec<String> = end
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| format!(", {}: {v}", Value::String(k.clone())))
                    .collect();
                writeln!(out, "{open}]{}}}", rest.concat())
            }
            Some(end) => {
                let header = if rows == 0 {
                    listing.header()
                } else {
                    String::new()
                };
                out.write_all((header + &listing.footer(end)).as_bytes())
            }
            None if json => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ),
            None => out.write_all(render(words, &v).as_bytes()),
        },
        Err(e) => {
            let _ = out.flush();
            eprintln!("tern ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match printed.and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("tern ctl: {e}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

/// The streamed listings and how each prints.
#[derive(Clone, Copy)]
enum Listing {
    Routes,
    /// BGP rows (a prefix with its paths) have no table form yet: one JSON line each.
    BgpRoutes,
    Sessions,
}

impl Listing {
    fn of(words: &[String]) -> Listing {
        match words.get(1).map(String::as_str) {
            Some("bgp") => Listing::BgpRoutes,
            Some("conntrack") => Listing::Sessions,
            _ => Listing::Routes,
        }
    }

    /// The JSON key the rows go under.
    fn key(self) -> &'static str {
        match self {
            Listing::Routes | Listing::BgpRoutes => "routes",
            Listing::Sessions => "sessions",
        }
    }

    fn header(self) -> String {
        match self {
            Listing::Routes => route_header(),
            Listing::BgpRoutes => String::new(),
            Listing::Sessions => session_header(),
        }
    }

    fn line(self, row: &Value) -> String {
        match self {
            Listing::Routes => route_line(row),
            Listing::BgpRoutes => format!("{row}\n"),
            Listing::Sessions => session_line(row),
        }
    }

    /// What follows the rows: the shards' counters for sessions.
    fn footer(self, end: &Value) -> String {
        match self {
            Listing::Routes | Listing::BgpRoutes => String::new(),
            Listing::Sessions => {
                let mut out = format!("{} sessions listed\n", end["count"]);
                for s in end["shards"].as_array().into_iter().flatten() {
                    out += &format!(
                        "shard {}: {} of {} sessions, {} mappings, created {}, expired {}, early dropped {}\n",
                        s["shard"], s["sessions_total"], s["capacity"], s["mappings"],
                        s["created"], s["expired"], s["early_dropped"]
                    );
                }
                out
            }
        }
    }
}

fn session_header() -> String {
    format!(
        "{:<5} {:<7} {:<16} {:<21} {:<21} {:<21} {:<21} {:>8} {:>7}\n",
        "proto",
        "kind",
        "state",
        "orig src",
        "orig dst",
        "reply src",
        "reply dst",
        "packets",
        "expires"
    )
}

/// One row of `show conntrack` as a table line.
fn session_line(r: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!(
        "{:<5} {:<7} {:<16} {:<21} {:<21} {:<21} {:<21} {:>8} {:>6}s\n",
        s(&r["proto"]),
        s(&r["kind"]),
        s(&r["state"]),
        s(&r["orig_src"]),
        s(&r["orig_dst"]),
        s(&r["reply_src"]),
        s(&r["reply_dst"]),
        s(&r["packets"]),
        s(&r["expires_s"])
    )
}

fn route_header() -> String {
    format!("{:<44} {:<10} {}\n", "prefix", "source", "next hop")
}

/// One row of `show routes` as a table line.
fn route_line(r: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let nh = &r["next_hop"];
    let desc = match nh["type"].as_str() {
        Some("neighbor") => format!(
            "via {} dev {} {}",
            s(&nh["via"]),
            s(&nh["interface"]),
            nh["mac"].as_str().or(nh["state"].as_str()).unwrap_or("")
        ),
        Some("connected") => format!("dev {}", s(&nh["interface"])),
        Some(t) => t.to_string(),
        None => "unresolved".into(),
    };
    format!("{:<44} {:<10} {}\n", s(&r["prefix"]), s(&r["source"]), desc)
}

/// Human-readable tables for `tern ctl show …`.
fn render(words: &[String], v: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = String::new();
    match words.get(1).map(|w| w.as_str()) {
        Some("trace") => {
            // One block per packet, a line per stage, as VPP's `show trace`.
            for p in v["packets"].as_array().into_iter().flatten() {
                // The time of day (UTC) it came, to the nanosecond.
                let ns = p["time_ns"].as_u64().unwrap_or(0);
                let day = ns % (86_400 * 1_000_000_000);
                let (secs, frac) = (day / 1_000_000_000, day % 1_000_000_000);
                out += &format!(
                    "Packet {}  worker {}  port {}  at {:02}:{:02}:{:02}.{frac:09} UTC\n",
                    s(&p["packet"]),
                    s(&p["worker"]),
                    s(&p["port"]),
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60
                );
                for step in p["steps"].as_array().into_iter().flatten() {
                    out += &format!("  {:<8} {}\n", s(&step["stage"]), s(&step["what"]));
                }
                out += "\n";
            }
            out += &format!("{} packets still to trace\n", s(&v["pending"]));
        }
        Some("interfaces") => {
            out += &format!(
                "{:<12} {:<18} {:>5} {:>10} {:>10} {:>8}  addresses\n",
                "name", "mac", "mtu", "rx", "tx", "drops"
            );
            for i in v.as_array().into_iter().flatten() {
                let addrs: Vec<String> = i["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect();
                out += &format!(
                    "{:<12} {:<18} {:>5} {:>10} {:>10} {:>8}  {}\n",
                    s(&i["name"]),
                    s(&i["mac"]),
                    s(&i["mtu"]),
                    s(&i["rx_packets"]),
                    s(&i["tx_packets"]),
                    s(&i["drops"]),
                    addrs.join(" ")
                );
                let b = &i["backend"];
                if b.is_object() {
                    out += &format!(
                        "{:<12} AF_XDP {} XDP, {} mode; kernel drops: rx_dropped={} rx_ring_full={} fill_ring_empty={}\n",
                        "",
                        s(&b["xdp"]),
                        s(&b["af_xdp"]),
                        s(&b["rx_dropped"]),
                        s(&b["rx_ring_full"]),
                        s(&b["rx_fill_ring_empty"])
                    );
                }
            }
        }
        Some("routes") => {
            out += &route_header();
            for r in v["routes"].as_array().into_iter().flatten() {
                out += &route_line(r);
            }
        }
        Some("neighbors") => {
            out += &format!(
                "{:<40} {:<12} {:<12} {}\n",
                "address", "interface", "state", "mac"
            );
            for n in v.as_array().into_iter().flatten() {
                out += &format!(
                    "{:<40} {:<12} {:<12} {}\n",
                    s(&n["address"]),
                    s(&n["interface"]),
                    s(&n["state"]),
                    s(&n["mac"])
                );
            }
        }
        Some("counters") => {
            for (section, values) in v.as_object().into_iter().flatten() {
                out += &format!("{section}:\n");
                for (i, w) in values.as_array().into_iter().flatten().enumerate() {
                    out += &format!(
                        "  {:<28} rx={} tx={}\n",
                        format!("{section}[{i}]"),
                        w["rx_packets"],
                        w["tx_packets"]
                    );
                }
                for (k, val) in values.as_object().into_iter().flatten() {
                    if val.is_object() {
                        let parts: Vec<String> = val
                            .as_object()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        out += &format!("  {k:<28} {}\n", parts.join(" "));
                    } else if val.as_u64() != Some(0) {
                        out += &format!("  {k:<28} {val}\n");
                    }
                }
            }
        }
        _ => out = format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
    out
}
