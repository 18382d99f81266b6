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
}
