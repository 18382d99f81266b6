//! tern's dataplane: packet I/O, the burst pipeline, workers, the control plane, the
//! configuration and the `tern` binary's pieces. See ARCHITECTURE.md for the map.

// Frames are boxed once, in the pool, and only the boxes move between the pool, bursts and
// backends: a `Vec<Box<Frame>>` moves 8 bytes per frame where a `Vec<Frame>` would copy 2 KiB.
#![allow(clippy::vec_box)]

pub mod adjacency;
pub mod buf;
pub mod config;
pub mod conntrack;
pub mod control;
pub mod counters;
pub mod ctl;
pub mod io;
pub mod pipeline;
pub mod router;
pub mod worker;

/// Header views and checksums live in their own leaf crate so `nat` and `tunnels` share them.
pub use wire;
