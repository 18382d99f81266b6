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
    let listing = dataplane::ctl_text::Listing::of(words);
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
            None => out.write_all(dataplane::ctl_text::render(words, &v).as_bytes()),
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
