//! Arbitrary frames into a running router (memory ports, every stage configured: ARP/NDP,
//! ICMP, FIB, NAT with a port forward, GRE and IPIP decap/encap). The first byte picks the
//! port, the rest is the frame. A panic in a worker or the control plane aborts the run
//! (libFuzzer's hook); a worker that stops taking frames fails it.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use dataplane::config::Config;
use dataplane::io::memory::MemoryPort;
use dataplane::router::Router;
use libfuzzer_sys::fuzz_target;

struct Ports {
    _router: Router,
    ports: Vec<MemoryPort>,
}

fn router() -> &'static Ports {
    static ROUTER: OnceLock<Ports> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let text = include_str!("../router.toml");
        let config = Config::parse("router.toml", text).expect("config");
        let router = Router::start(&config, false).expect("router");
        let ports = router
            .memory
            .iter()
            .map(|p| p.clone().expect("memory port"))
            .collect();
        Ports {
            _router: router,
            ports,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, frame)) = data.split_first() else {
        return;
    };
    let r = router();
    let port = &r.ports[usize::from(which) % r.ports.len()];
    port.inject(frame);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !port.rx.lock().map(|q| q.is_empty()).unwrap_or(true) {
        assert!(
            Instant::now() < deadline,
            "the worker stopped taking frames"
        );
        std::thread::yield_now();
    }
    for p in &r.ports {
        p.take_sent();
    }
});
