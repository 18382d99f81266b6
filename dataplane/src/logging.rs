//! tern's log: human lines (colour only at a terminal) or one JSON object a line for log
//! shippers (`--log-format json`), filtered by `RUST_LOG` (default `info`) and changed at
//! runtime by `tern ctl log level SPEC`.

use std::sync::OnceLock;

use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the log for this process (the `tern` binary calls it once, first).
pub fn init(format: Format) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match format {
        Format::Text => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
            )
            .try_init(),
        Format::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(handle);
    }
}

/// `tern ctl log level SPEC`: `error`, `warn`, `info`, `debug`, `trace`, or a filter such
/// as `info,bgp_glue=debug`.
pub fn set_level(spec: &str) -> Result<String, String> {
    let handle = FILTER
        .get()
        .ok_or("this process's log is not set up by tern (a test or an embedding)")?;
    let filter = EnvFilter::try_new(spec).map_err(|e| format!("log level {spec:?}: {e}"))?;
    handle.reload(filter).map_err(|e| e.to_string())?;
    tracing::info!(level = spec, "log level changed");
    Ok(format!("log level {spec}"))
}
