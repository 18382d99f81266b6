//! tern's dataplane: packet I/O, the burst pipeline, workers, the control plane, the
//! configuration and the `tern` binary's pieces. See ARCHITECTURE.md for the map.

pub mod adjacency;
pub mod buf;
pub mod config;
pub mod control;
pub mod counters;
pub mod ctl;
pub mod io;
pub mod pipeline;
pub mod router;
pub mod worker;
pub mod wire;
