//! The ctl client as an operator types it: `help`, shortened keywords, `TERN_SOCKET`.

use std::process::Command;

use testbed::*;

fn tern_ctl(
    socket: Option<&std::path::Path>,
    env_socket: Option<&std::path::Path>,
    words: &[&str],
) -> (bool, String, String) {
    let mut c = Command::new(tern_binary());
    c.arg("ctl");
    if let Some(s) = socket {
        c.arg("--socket").arg(s);
    }
    match env_socket {
        Some(s) => c.env("TERN_SOCKET", s),
        None => c.env_remove("TERN_SOCKET"),
    };
    let out = c.args(words).output().expect("tern ctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_abbreviations_and_the_socket_from_the_environment() {
    let t = TwoHosts::new("", 1500);
    let socket = t.tern.socket.as_path();

    let (ok, help, _) = tern_ctl(None, None, &["help"]);
    assert!(ok);
    for command in [
        "show interfaces",
        "show bgp summary",
        "trace add N [PORT]",
        "capture PORT",
    ] {
        assert!(help.contains(command), "{command:?} in\n{help}");
    }

    // `sh int` through TERN_SOCKET, with no --socket.
    let (ok, out, err) = tern_ctl(None, Some(socket), &["sh", "int"]);
    assert!(ok, "{err}");
    assert!(out.contains(&t.tap_a) && out.contains(&t.tap_b), "{out}");
    // --socket wins over the environment.
    let (ok, _, err) = tern_ctl(
        Some(socket),
        Some(std::path::Path::new("/nonexistent")),
        &["sh", "count"],
    );
    assert!(ok, "{err}");

    // An ambiguous prefix names the candidates and asks nothing of tern.
    let (ok, _, err) = tern_ctl(Some(socket), None, &["sh", "rou"]);
    assert!(!ok && err.contains("is ambiguous: route, routes"), "{err}");
    // A prefix that is a command's: passed to tern, which answers.
    let (ok, _, err) = tern_ctl(Some(socket), None, &["sh", "bgp", "sum"]);
    assert!(!ok && err.contains("BGP is not configured"), "{err}");
    let (ok, _, err) = tern_ctl(Some(socket), None, &["show", "bogus"]);
    assert!(!ok && err.contains("tern ctl help"), "{err}");
    // One interface by name.
    let one = t.tern.ctl(&["show", "interfaces", &t.tap_b]);
    assert_eq!(one.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(one[0]["name"], t.tap_b.as_str());
    let e = t
        .tern
        .try_ctl(&["show", "interfaces", "eth9"])
        .expect_err("no eth9");
    assert!(
        e.contains("no interface or tunnel is named \"eth9\""),
        "{e}"
    );
    // A route via tern's own address is refused at runtime as in the config.
    let e = t
        .tern
        .try_ctl(&["route", "add", "198.51.100.0/24", "via", TERN_A4]);
    assert!(e.is_err_and(|e| e.contains("tern's own address")));
}

#[test]
fn the_log_level_changes_at_runtime() {
    let t = TwoHosts::new("", 1500);
    let requests = |t: &TwoHosts| t.tern.log().matches("ctl request").count();
    t.tern.ctl(&["show", "counters"]);
    assert_eq!(requests(&t), 0, "at info, requests are not logged");
    let (ok, out, err) = tern_ctl(Some(&t.tern.socket), None, &["log", "level", "debug"]);
    assert!(ok && out.contains("log level debug"), "{out}{err}");
    t.tern.ctl(&["show", "counters"]);
    assert!(requests(&t) >= 1, "at debug they are: {}", t.tern.log());
    t.tern.ctl(&["log", "level", "info"]);
    let before = requests(&t);
    t.tern.ctl(&["show", "counters"]);
    assert_eq!(requests(&t), before, "back at info");
    let e = t
        .tern
        .try_ctl(&["log", "level", "loud=="])
        .expect_err("bad filter");
    assert!(e.contains("loud=="), "{e}");
    // State changes are logged at info: a neighbour resolved, with its address and MAC.
    let out = ping(&t.a, &["-c", "1", "-W", "2", B4]);
    assert!(out.contains("1 received"), "{out}");
    let log = t.tern.log();
    assert!(
        log.lines()
            .any(|l| l.contains("neighbour resolved") && l.contains(&format!("ip={B4}"))),
        "{log}"
    );
}

#[test]
fn json_log_lines_for_shippers() {
    let dir = std::env::temp_dir().join(unique("tern-json-log-"));
    std::fs::create_dir_all(&dir).expect("dir");
    let socket = dir.join("tern.sock");
    let config = dir.join("tern.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nsocket = \"{}\"\n\n[[interface]]\nname = \"m0\"\nbackend = \"memory\"\n\
             mac = \"02:00:00:00:00:01\"\naddresses = [\"192.0.2.1/24\"]\n",
            socket.display()
        ),
    )
    .expect("config");
    let log = dir.join("tern.log");
    let child = Command::new(tern_binary())
        .args(["--log-format", "json", "run", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("tern");
    let mut tern = KillOnDrop(child);
    eventually(std::time::Duration::from_secs(10), "tern to answer", || {
        dataplane::ctl::request(&socket, &["show".into(), "interfaces".into()]).is_ok()
    });
    let text = std::fs::read_to_string(&log).expect("log");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "tern logged its start");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
    let _ = tern.0.kill();
    let _ = tern.0.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
