//! What is particular to AF_XDP ports: the program's lifetime, rebinding, and one socket per
//! worker on multi-queue links. (Forwarding itself is covered on both backends by the
//! `afxdp::` halves of the router and NAT tests.)

use std::time::{Duration, Instant};

use testbed::*;

fn xdp_attached(t: &TwoHosts, ifname: &str) -> bool {
    let dut = t.dut.as_ref().expect("AF_XDP topology");
    dut.ok(&["ip", "link", "show", ifname]).contains("prog/xdp")
}

#[test]
fn program_detaches_when_tern_is_killed_and_a_new_tern_binds_at_once() {
    let mut t = TwoHosts::with(Ports::AfXdp, "", 1500);
    assert!(xdp_attached(&t, &t.tap_a) && xdp_attached(&t, &t.tap_b));
    // veth: native XDP, copy-mode AF_XDP (no zero-copy driver), one socket per worker.
    let ports = t.tern.ctl(&["show", "interfaces"]);
    let backend = &ports[0]["backend"];
    assert_eq!(backend["xdp"], "native", "{ports}");
    assert_eq!(backend["af_xdp"], "copy", "{ports}");
    assert_eq!(backend["sockets"], 1, "{ports}");
    assert!(backend["rx_dropped"].is_u64(), "{ports}");
    let out = ping(&t.a, &["-c", "2", "-i", "0.2", "-W", "2", B4]);
    assert!(out.contains("2 received"), "{out}");

    // SIGKILL: tern runs no cleanup, the kernel drops the BPF link with the process.
    t.tern.kill();
    let deadline = Instant::now() + Duration::from_secs(5);
    while xdp_attached(&t, &t.tap_a) || xdp_attached(&t, &t.tap_b) {
        assert!(
            Instant::now() < deadline,
            "XDP program still attached after tern died"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // With no program, the kernel stack owns the port again and nothing is forwarded.
    let out = ping(&t.a, &["-c", "1", "-W", "1", B4]);
    assert!(out.contains("0 received"), "{out}");

    // A new tern binds the same queues straight away (EBUSY is retried) and forwards.
    t.tern = Tern::start_in(t.dut.as_ref(), &t.config);
    let out = ping(&t.a, &["-c", "2", "-i", "0.2", "-W", "2", B4]);
    assert!(out.contains("2 received"), "{out}\n{}", t.tern.log());
    assert!(t.tern.log().contains("AF_XDP port up"), "{}", t.tern.log());
}

#[test]
fn two_workers_each_take_their_queue_of_a_two_queue_link() {
    let t = TwoHosts::build(Ports::AfXdp, "[dataplane]\nworkers = 2\n", 1500, 2);
    // Many TCP connections: the sender's transmit queue (hence tern's receive queue, on
    // veth) follows each flow's hash, so both queues see traffic.
    let server = t.b.spawn(&[
        "python3",
        "-c",
        "import socket\n\
         s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('0.0.0.0', 5001)); s.listen(64)\n\
         for _ in range(32):\n    c,_=s.accept(); c.sendall(c.recv(100)); c.close()\n",
    ]);
    let mut server = KillOnDrop(server);
    std::thread::sleep(Duration::from_millis(300));
    let client = t.a.ok(&[
        "python3",
        "-c",
        &format!(
            "import socket\n\
             ok=0\n\
             for i in range(32):\n    c=socket.create_connection(('{B4}', 5001), timeout=3)\n    \
             c.sendall(b'x%d' % i); ok += c.recv(100) == b'x%d' % i; c.close()\n\
             print(ok)\n"
        ),
    ]);
    assert_eq!(client.trim(), "32", "every connection echoed");
    let _ = server.0.wait();
    let workers = t.tern.ctl(&["show", "counters"])["workers"].clone();
    let rx: Vec<u64> = workers
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["rx_packets"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(rx.len(), 2, "{workers}");
    assert!(
        rx.iter().all(|&n| n > 0),
        "both workers received frames: {workers}"
    );
}

/// A link with more rx queues than workers would hand the frames of the unbound queues to
/// the kernel stack: tern refuses to start and says how to fix it.
#[test]
fn more_rx_queues_than_workers_is_refused_with_the_fix() {
    let dut = Netns::new("hd");
    let host = Netns::new("ha");
    let port = unique("tq");
    veth(&dut, &port, &host, &port, 2);
    let dir = std::env::temp_dir().join(unique("tern-queues-"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("tern.toml");
    std::fs::write(
        &config,
        format!(
            "[control]\nsocket = \"{}\"\n\n[[interface]]\nname = \"{port}\"\nbackend = \"afxdp\"\n\
             mac = \"02:00:00:00:0a:01\"\naddresses = [\"192.0.2.1/24\"]\n",
            dir.join("tern.sock").display()
        ),
    )
    .expect("config");
    let child = dut
        .command(&[&tern_binary().display().to_string(), "run", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tern");
    let mut child = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "tern kept running on a 2-queue link with 1 worker"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read;
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("2 rx queue(s) and tern runs 1 worker(s)")
            && stderr.contains("dataplane.workers = 2"),
        "{stderr}"
    );
    assert!(
        !dut.ok(&["ip", "link", "show", &port]).contains("prog/xdp"),
        "no program left attached"
    );
}
