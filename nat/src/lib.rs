//! Stateful NAT44: connection tracking, SNAT with endpoint-independent mappings, DNAT port
//! forwards and Maglev load balancing, ICMP error translation, fragments. A pure library:
//! no threads, no I/O, no clock (every call takes `now` in milliseconds); the dataplane
//! owns one [`Shard`] per worker and calls it from its pipeline.
//!
//! ## Sharding
//! Shared nothing but the external port space ([`PortMap`]: one atomic word per port,
//! taken by compare-and-swap). Each worker owns a shard; the word of an external port says
//! which shard holds its mapping, so a packet arriving for that port can be handed to the
//! owner. See ARCHITECTURE.md for how the dataplane steers both directions of a flow.

pub mod flow;
pub mod frag;
pub mod icmp;
mod index;
pub mod maglev;
pub mod mapping;
mod mem;
pub mod ports;
pub mod rewrite;
pub mod rules;
pub mod shard;
mod steer;
mod subscriber;
pub mod table;
pub mod tcp;

pub use flow::Flow;
pub use ports::PortMap;
pub use rules::{Endpoint, Filtering, Frontend, Rules, Timeouts};
pub use shard::{Lookahead, Post, Pre, Reason, Shard, Side, Stats};
pub use table::{Class, Handle, Kind, Session};
