//! Tunnel endpoints: IPIP (RFC 2003), GRE (RFC 2784/2890) over IPv4 and IPv6 (RFC 7676),
//! and 6in4 (RFC 4213). A pure library: the tunnel table, encapsulation into a buffer's
//! headroom, decapsulation with every check a tunnel endpoint owes (anti-spoofing, keys,
//! checksums, sequence numbers, RFC 6040 ECN), and the handling of ICMP errors about
//! outer packets. No threads, no I/O, no clock; the dataplane calls it from its pipeline.
//!
//! In the pipeline (see ARCHITECTURE.md): decapsulation runs right after parsing, so the
//! inner packet goes through the FIB, TTL and MTU stages like any other; encapsulation
//! runs when the FIB picked a tunnel adjacency, after the inner TTL and MTU checks, and
//! the outer packet is then routed to the remote endpoint.

pub mod decap;
pub mod ecn;
pub mod encap;
pub mod icmp;
pub mod table;
pub mod template;
pub mod tunnel;

pub use decap::{decap, Error as DecapError};
pub use encap::encap;
pub use table::{LastShape, Tunnel, TunnelTable};
pub use tunnel::{Decap, Dscp, Kind, Spec, Ttl};

/// IP protocol numbers of the encapsulations.
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_IPV6: u8 = 41;
pub const PROTO_GRE: u8 = 47;
