//! Structured logging via tracing: `RUST_LOG` filter, pretty or JSON lines on stderr.

use tracing_subscriber::EnvFilter;

use crate::LogFormat;

/// Installs the global subscriber. Safe to call twice (the second call does nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
