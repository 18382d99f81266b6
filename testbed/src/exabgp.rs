//! An ExaBGP 5 speaker in a test's namespace (from the virtualenv `.ci/install-deps`
//! makes), with a control process: [`ExaBgp::command`] sends API commands ("announce
//! route …", "withdraw route …") and [`ExaBgp::received`] reads what ExaBGP heard from
//! its peer (one JSON message per line). Killed (by PID) when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{unique, KillOnDrop, Netns};

/// Where `.ci/install-deps` installs ExaBGP (`$EXABGP` overrides).
pub fn exabgp_binary() -> PathBuf {
    std::env::var_os("EXABGP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tern/exabgp/bin/exabgp"))
}

/// The API process: copies ExaBGP's messages (stdin) to `received`, and lines appended to
/// `commands` to ExaBGP (stdout).
const API_PROCESS: &str = r#"
import os, sys, threading, time
commands, received = sys.argv[1], sys.argv[2]
def listen():
    with open(received, 'a') as out:
        for line in sys.stdin:
            out.write(line); out.flush()
    os._exit(0)
threading.Thread(target=listen, daemon=True).start()
done = 0
while True:
    try:
        with open(commands) as f:
            data = f.read()
    except FileNotFoundError:
        data = ''
    if len(data) > done:
        sys.stdout.write(data[done:]); sys.stdout.flush(); done = len(data)
    time.sleep(0.05)
"#;

pub struct ExaBgp {
    dir: PathBuf,
    child: Option<KillOnDrop>,
}

impl ExaBgp {
    /// Starts ExaBGP in `ns` with `neighbors` (ExaBGP `neighbor … { … }` blocks; they may
    /// use `api { processes [ control ]; receive { parsed; update; } }`). `listen` (addresses,
    /// space-separated) makes it accept connections there, on port 179.
    pub fn start(ns: &Netns, neighbors: &str, listen: Option<&str>) -> ExaBgp {
        let dir = std::env::temp_dir().join(unique("exabgp-"));
        std::fs::create_dir_all(&dir).expect("exabgp dir");
        let script = dir.join("api.py");
        std::fs::write(&script, API_PROCESS).expect("api.py");
        let commands = dir.join("commands");
        std::fs::write(&commands, "").expect("commands");
        let config = format!(
            "process control {{\n run /usr/bin/python3 {} {} {};\n encoder json;\n}}\n{neighbors}",
            script.display(),
            commands.display(),
            dir.join("received").display()
        );
        let conf = dir.join("exabgp.conf");
        std::fs::write(&conf, config).expect("exabgp.conf");
        let log = std::fs::File::create(dir.join("exabgp.log")).expect("log");
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &ns.name])
            .arg(exabgp_binary())
            .arg("server")
            .arg(&conf)
            .env("exabgp_daemon_user", "root")
            .env("exabgp_daemon_daemonize", "false")
            .env("exabgp_log_destination", "stdout")
            .env("exabgp_log_level", "DEBUG")
            .env("exabgp_api_ack", "false")
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        match listen {
            Some(addr) => command
                .env("exabgp_tcp_bind", addr)
                .env("exabgp_tcp_port", "179"),
            None => command.env("exabgp_tcp_bind", ""),
        };
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn exabgp (run .ci/install-deps)");
        ExaBgp {
            dir,
            child: Some(KillOnDrop(child)),
        }
    }

    /// Sends an API command (e.g. `withdraw route 198.18.6.0/24 next-hop 192.0.2.2`).
    pub fn command(&self, line: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("commands"))
            .expect("commands");
        writeln!(f, "{line}").expect("command");
    }

    /// What ExaBGP received from its peers so far (JSON lines).
    pub fn received(&self) -> String {
        std::fs::read_to_string(self.dir.join("received")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("exabgp.log")).unwrap_or_default()
    }

    /// Waits until a line of ExaBGP's log contains `text`; returns that line.
    pub fn wait_log(&self, text: &str, timeout: Duration) -> String {
        crate::wait_for_line(
            timeout,
            &format!("{text:?} in exabgp's log"),
            || self.log(),
            |line| line.contains(text),
        )
    }
}

impl Drop for ExaBgp {
    fn drop(&mut self) {
        self.child.take();
        if std::thread::panicking() {
            eprintln!(
                "exabgp log:\n{}\nreceived:\n{}",
                self.log(),
                self.received()
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
