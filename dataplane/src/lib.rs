//! tern's dataplane: packet I/O, the burst pipeline, workers, the control plane, the
//! configuration and the `tern` binary's pieces. See ARCHITECTURE.md for the map.

pub mod adjacency;
pub mod backend_health;
pub mod buf;
pub mod capture;
pub mod commands;
pub mod config;
pub mod control;
pub mod control_msg;
pub mod counters;
pub mod ctl;
pub mod ctl_text;
pub mod handoff;
pub mod idle;
pub mod io;
pub mod listing;
pub mod logging;
pub mod metrics;
pub mod nat_mailbox;
pub mod pipeline;
pub mod router;
pub mod serve;
pub mod trace;
pub mod worker;

/// Header views and checksums live in their own leaf crate so `nat` and `tunnels` share them.
pub use wire;
