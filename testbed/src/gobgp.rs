//! A GoBGP 3 speaker (`gobgpd`, Debian's package) in a test's namespace, configured with a
//! TOML file, driven with the `gobgp` CLI over its gRPC API on the namespace's loopback.
//! Its log goes to a file the test can read; killed (by PID) when dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::{unique, KillOnDrop, Netns};

/// Where the gRPC API listens, inside the speaker's namespace.
const API: (&str, &str) = ("127.0.0.1", "50051");

pub struct GoBgp {
    ns: String,
    dir: PathBuf,
    child: Option<KillOnDrop>,
}

impl GoBgp {
    /// Starts `gobgpd` in `ns` with `config` (gobgpd's TOML: `[global.config]`,
    /// `[[neighbors]]` …).
    pub fn start(ns: &Netns, config: &str) -> GoBgp {
        let dir = std::env::temp_dir().join(unique("gobgp-"));
        std::fs::create_dir_all(&dir).expect("gobgp dir");
        let conf = dir.join("gobgpd.toml");
        std::fs::write(&conf, config).expect("gobgpd.toml");
        let log = std::fs::File::create(dir.join("gobgpd.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "gobgpd", "-t", "toml", "-f"])
            .arg(&conf)
            .args([
                "--api-hosts",
                &format!("{}:{}", API.0, API.1),
                "--log-plain",
                "--log-level",
                "debug",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn gobgpd (run .ci/install-deps)");
        GoBgp {
            ns: ns.name.clone(),
            dir,
            child: Some(KillOnDrop(child)),
        }
    }

    /// Runs `gobgp ARGS` against this speaker; its output, or what went wrong.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp", "-u", API.0, "-p", API.1])
            .args(args)
            .output()
            .map_err(|e| format!("gobgp: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "gobgp {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gobgpd.log")).unwrap_or_default()
    }

    /// Waits until a line of gobgpd's log contains every one of `words`; returns that line.
    pub fn wait_log(&self, words: &[&str], timeout: Duration) -> String {
        crate::wait_for_line(
            timeout,
            &format!("{words:?} in gobgpd's log"),
            || self.log(),
            |line| words.iter().all(|w| line.contains(w)),
        )
    }
}

impl Drop for GoBgp {
    fn drop(&mut self) {
        self.child.take();
        if std::thread::panicking() {
            eprintln!("gobgpd log:\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
