//! The tunnel benchmark's workers (`benches/tunnels.rs`, `examples/tunnel_loop.rs`): three
//! workers with one config and the RIS 2026 IPv4 table, destinations drawn from it.

use std::net::Ipv4Addr;

use dataplane::config::StaticRoute;
use dataplane::wire::{eth, ipv4};
use ipnet::{IpNet, Ipv4Net};

use crate::data;
use crate::pipeline::{frames_into, ipv4_frame, routes_via_neighbor, BenchWorker, TWO_PORTS};

/// Appended to [`TWO_PORTS`].
const TUNNELS: &str = r#"
[[tunnel]]
name = "out-gre"
kind = "gre"
local = "203.0.113.1"
remote = "203.0.113.2"
key = 7
[[tunnel]]
name = "in-gre"
kind = "gre"
local = "192.0.2.1"
remote = "192.0.2.5"
key = 9
"#;

/// `frame` (Ethernet + IPv4) wrapped in IPv4/GRE with key 9 from the `in-gre` remote.
fn gre_wrapped(frame: &[u8]) -> Vec<u8> {
    let inner = &frame[eth::LEN..eth::LEN + ipv4::total_len(&frame[eth::LEN..])];
    let header = wire::gre::Header {
        flags: 0,
        protocol: wire::gre::TYPE_IPV4,
        key: Some(9),
        sequence: None,
        len: 8,
    };
    let mut gre = vec![0; header.len];
    header.write(&mut gre);
    gre.extend_from_slice(inner);
    let (src, dst) = (Ipv4Addr::new(192, 0, 2, 5), Ipv4Addr::new(192, 0, 2, 1));
    ipv4_frame(tunnels::PROTO_GRE, src, dst, ipv4::FLAG_DF, &gre)
}

/// The three workloads.
pub struct TunnelWorkers {
    /// 64-byte IPv4 frames forwarded to a neighbour.
    pub plain: BenchWorker,
    /// The same frames, every route into a keyed GRE tunnel.
    pub encap: BenchWorker,
    /// The same frames arriving GRE-encapsulated (key 9) from a tunnel remote,
    /// decapsulated and forwarded to the neighbour.
    pub decap: BenchWorker,
}

pub fn workers() -> TunnelWorkers {
    let config = format!("{TWO_PORTS}{TUNNELS}");
    let table: Vec<Ipv4Net> = data::table(data::RIS_V4);
    let into_tunnel = table.iter().map(|net| StaticRoute {
        prefix: IpNet::V4(*net),
        via: None,
        interface: None,
        tunnel: Some(0),
    });
    let plain = frames_into(&table);
    let wrapped: Vec<Vec<u8>> = plain.iter().map(|f| gre_wrapped(f)).collect();
    TunnelWorkers {
        plain: BenchWorker::new(&config, routes_via_neighbor(&table), plain.clone()),
        encap: BenchWorker::new(&config, into_tunnel, plain),
        decap: BenchWorker::new(&config, routes_via_neighbor(&table), wrapped),
    }
}

impl TunnelWorkers {
    /// Every frame forwarded, and through the tunnel where it should be.
    pub fn assert_all_forwarded(&mut self) {
        self.plain.assert_no_drops("plain");
        self.encap.assert_no_drops("gre-encap");
        self.decap.assert_no_drops("gre-decap");
        assert_eq!(
            self.encap.event("tunnel_encapsulated"),
            self.encap.event("forwarded")
        );
        assert_eq!(
            self.decap.event("tunnel_decapsulated"),
            self.decap.event("forwarded")
        );
    }
}
