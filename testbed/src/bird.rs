//! A BIRD 2 daemon in a test's namespace: its own config, control socket and log in a
//! private directory; killed (by PID) when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{unique, KillOnDrop, Netns};

pub struct Bird {
    ns: String,
    dir: PathBuf,
    socket: PathBuf,
    child: Option<KillOnDrop>,
}

impl Bird {
    /// Starts `bird` in `ns` with `config` (the `log` line and socket are added).
    pub fn start(ns: &Netns, config: &str) -> Bird {
        let dir = std::env::temp_dir().join(unique("bird-"));
        std::fs::create_dir_all(&dir).expect("bird dir");
        let socket = dir.join("bird.ctl");
        let conf = dir.join("bird.conf");
        let log = dir.join("bird.log");
        std::fs::write(&conf, format!("log \"{}\" all;\n{config}", log.display()))
            .expect("bird.conf");
        let mut b = Bird {
            ns: ns.name.clone(),
            dir,
            socket,
            child: None,
        };
        b.launch(&[]);
        b
    }

    fn launch(&mut self, extra: &[&str]) {
        let conf = self.dir.join("bird.conf");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "bird", "-f", "-c"])
            .arg(&conf)
            .arg("-s")
            .arg(&self.socket)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn bird (is bird2 installed?)");
        self.child = Some(KillOnDrop(child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.try_cli("show status").contains("Daemon is up") {
            assert!(
                Instant::now() < deadline,
                "bird did not come up: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_cli(&self, command: &str) -> String {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, "birdc", "-s"])
            .arg(&self.socket)
            .args(command.split_whitespace())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Runs a `birdc` command; returns its output.
    pub fn cli(&self, command: &str) -> String {
        self.try_cli(command)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.0.id()).unwrap_or(0)
    }

    /// Sends `signal` to bird (SIGSTOP to freeze it, SIGCONT to thaw).
    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling the daemon this test started, by its pid.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// `birdc graceful restart` (BIRD stops keeping its routes in the kernel and its
    /// peers), then a new BIRD in recovery mode (`-R`) on the same config.
    pub fn graceful_restart(&mut self) {
        self.cli("graceful restart");
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.0.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.launch(&["-R"]);
    }

    /// Waits until `show protocols all NAME` contains `text`.
    pub fn wait_protocol(&self, name: &str, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.cli(&format!("show protocols all {name}"));
            if out.contains(text) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "bird protocol {name} never showed {text:?}:\n{out}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        self.child.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
