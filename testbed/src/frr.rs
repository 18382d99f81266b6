//! FRR's zebra (with the `dplane_fpm_nl` module, pointed at tern's FPM listener) and
//! staticd in a test's namespace: private config, sockets and logs; both killed by PID when
//! dropped.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{unique, KillOnDrop, Netns};

const DAEMONS: &str = "/usr/lib/frr";

pub struct Zebra {
    ns: String,
    dir: PathBuf,
    // staticd first: it talks to zebra, not the other way round.
    staticd: Option<KillOnDrop>,
    zebra: Option<KillOnDrop>,
}

impl Zebra {
    /// Starts zebra sending its FIB to `fpm` (`address port N`) and staticd with `statics`
    /// (staticd configuration lines, e.g. `ip route 198.18.5.0/24 192.0.2.2`).
    pub fn start(ns: &Netns, fpm: &str, statics: &str) -> Zebra {
        let dir = std::env::temp_dir().join(unique("frr-"));
        std::fs::create_dir_all(&dir).expect("frr dir");
        std::fs::write(
            dir.join("zebra.conf"),
            format!("fpm address {fpm}\nno fpm use-next-hop-groups\n"),
        )
        .expect("zebra.conf");
        std::fs::write(dir.join("staticd.conf"), statics).expect("staticd.conf");
        // The daemons drop to the `frr` user (root is refused: it is not in `frrvty`).
        crate::sh(&["chown", "-R", "frr:frr", &dir.display().to_string()]);
        let mut z = Zebra {
            ns: ns.name.clone(),
            dir,
            staticd: None,
            zebra: None,
        };
        z.zebra = Some(z.daemon("zebra", &["-M", "dplane_fpm_nl"]));
        let api = z.dir.join("zserv.api");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !api.exists() {
            assert!(
                Instant::now() < deadline,
                "zebra did not come up: {}",
                z.log("zebra")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        z.staticd = Some(z.daemon("staticd", &[]));
        z
    }

    fn daemon(&self, name: &str, extra: &[&str]) -> KillOnDrop {
        let d = &self.dir;
        let path = |f: &str| d.join(f).display().to_string();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(format!("{DAEMONS}/{name}"))
            .args(["-u", "frr", "-g", "frr"])
            .args(["-f", &path(&format!("{name}.conf"))])
            .args(["-i", &path(&format!("{name}.pid"))])
            .args(["-z", &path("zserv.api")])
            .args(["--vty_socket", &d.display().to_string()])
            .args(["--log", &format!("file:{}", path(&format!("{name}.log")))])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} (is frr installed?): {e}"));
        KillOnDrop(child)
    }

    /// Runs `vtysh` commands in configuration mode (e.g. `no ip route …`); returns the
    /// output.
    pub fn configure(&self, commands: &[&str]) -> String {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, "vtysh", "--vty_socket"])
            .arg(&self.dir)
            .args(["-c", "configure terminal"]);
        for command in commands {
            c.args(["-c", command]);
        }
        let out = c.output().expect("vtysh");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// zebra's view of its routes (`show ip route` / `show ipv6 route`).
    pub fn show(&self, what: &str) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "vtysh", "--vty_socket"])
            .arg(&self.dir)
            .args(["-c", what])
            .output()
            .expect("vtysh");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn log(&self, daemon: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{daemon}.log"))).unwrap_or_default()
    }
}

impl Drop for Zebra {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- zebra log ---\n{}", self.log("zebra"));
        }
        self.staticd.take();
        self.zebra.take();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
