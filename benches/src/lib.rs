//! Benchmarks (criterion, under `benches/`) and, later, the forwarding throughput harness.
//! The real BGP tables are read with the same helper the lpm tests use.

#[path = "../../lpm/tests/common/data.rs"]
pub mod data;

pub mod nat;
pub mod pipeline;
pub mod tunnels;
