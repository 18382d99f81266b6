//! `tern ctl capture` on TAP and AF_XDP ports: the pcap holds exactly the frames the hosts
//! sent that the filter takes, while other traffic flows through the same port; `-w -`
//! feeds tshark live.

use std::process::{Command, Stdio};
use std::time::Duration;

use testbed::*;

/// Starts `tern ctl capture ARGS` against `t`'s tern and waits until the capture is on.
fn capture(t: &TwoHosts, args: &[&str]) -> KillOnDrop {
    let before = t.tern.log().matches("capture started").count();
    let child = Command::new(tern_binary())
        .arg("ctl")
        .arg("--socket")
        .arg(&t.tern.socket)
        .arg("capture")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tern ctl capture");
    eventually(Duration::from_secs(5), "the capture to start", || {
        t.tern.log().matches("capture started").count() > before
    });
    KillOnDrop(child)
}

fn captures_exactly_what_the_hosts_sent(ports: Ports) {
    let t = TwoHosts::with(ports, "", 1500);
    let dir = std::env::temp_dir().join(unique("tern-capture-"));
    std::fs::create_dir_all(&dir).expect("dir");
    let pcap = dir.join("a.pcap");
    let pcap_arg = pcap.display().to_string();
    let args = [
        &t.tap_a, "rx", "--filter", "icmp", "--count", "5", "-w", &pcap_arg,
    ];
    let mut cap = capture(&t, &args);
    // Other traffic through the same port meanwhile: UDP from A to B as fast as one
    // sender goes, for the whole capture.
    let flood = t.a.spawn(&[
        "python3",
        "-c",
        "import socket, sys, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         end = time.time() + 3; n = 0\n\
         while time.time() < end:\n    s.sendto(b'x' * 18, (sys.argv[1], 9)); n += 1\n\
         print(n)\n",
        B4,
    ]);
    let out = ping(&t.a, &["-c", "5", "-i", "0.2", "-W", "2", B4]);
    assert!(out.contains("5 packets transmitted, 5 received"), "{out}");
    let flood = flood.wait_with_output().expect("flood");
    let sent: u64 = String::from_utf8_lossy(&flood.stdout)
        .trim()
        .parse()
        .expect("flood count");
    assert!(sent > 10_000, "the other traffic ran ({sent} datagrams)");
    let status = cap.0.wait().expect("capture ends after its count");
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut e) = cap.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "{stderr}\n{}", t.tern.log());
    assert!(stderr.contains("5 frames captured"), "{stderr}");
    let rows = tshark(&pcap, "", &["ip.src", "ip.dst", "icmp.type", "icmp.seq"]);
    let expected: Vec<Vec<String>> = (1..=5)
        .map(|seq| vec![A4.into(), B4.into(), "8".into(), seq.to_string()])
        .collect();
    assert_eq!(rows, expected, "the five echo requests, nothing else");
    assert!(
        t.tern.log().contains("captured=5 dropped=0"),
        "{}",
        t.tern.log()
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Live: what tern sends B, straight into tshark.
    let socket = t.tern.socket.display().to_string();
    let pipeline = format!(
        "{} ctl --socket {socket} capture {} tx --filter 'icmp and dst host {B4}' --count 3 -w - \
         | tshark -r - -T fields -e ip.src -e ip.ttl",
        tern_binary().display(),
        t.tap_b
    );
    let before = t.tern.log().matches("capture started").count();
    let live = Command::new("sh")
        .args(["-c", &pipeline])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("live capture");
    eventually(Duration::from_secs(5), "the live capture to start", || {
        t.tern.log().matches("capture started").count() > before
    });
    let out = ping(&t.a, &["-c", "3", "-i", "0.2", "-W", "2", B4]);
    assert!(out.contains("3 received"), "{out}");
    let live = live.wait_with_output().expect("live capture ends");
    let text = String::from_utf8_lossy(&live.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![format!("{A4}\t63"); 3],
        "three forwarded requests, TTL lowered: {}",
        String::from_utf8_lossy(&live.stderr)
    );
}

#[test]
fn tap_port_capture_holds_exactly_the_hosts_frames() {
    captures_exactly_what_the_hosts_sent(Ports::Tap);
}

#[test]
fn afxdp_port_capture_holds_exactly_the_hosts_frames() {
    captures_exactly_what_the_hosts_sent(Ports::AfXdp);
}

#[test]
fn a_bad_capture_request_is_refused_with_the_reason() {
    let t = TwoHosts::new("", 1500);
    for (args, reason) in [
        (vec!["eth9", "-w", "-"], "no port \"eth9\""),
        (
            vec![t.tap_a.as_str(), "--filter", "vlan 7", "-w", "-"],
            "vlan",
        ),
        (vec![t.tap_a.as_str()], "-w FILE"),
    ] {
        let out = Command::new(tern_binary())
            .arg("ctl")
            .arg("--socket")
            .arg(&t.tern.socket)
            .arg("capture")
            .args(&args)
            .output()
            .expect("tern ctl capture");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "no pcap for a refused request");
    }
}
