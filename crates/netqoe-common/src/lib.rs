//! Shared runtime blocks of the netqoe binaries: CLI args, logging, metrics, shutdown, exit
//! codes, the global allocator.
//!
//! Only settings that the spec shares across binaries live here (`NATS_URL`, `DATABASE_URL`,
//! `NETQOE_LOG_FORMAT`); every other flag belongs to its binary, with its own
//! `NETQOE_<BINARY>_<FLAG>` variable.

pub mod alloc;
pub mod args;
pub mod backoff;
pub mod exit;
pub mod logging;
pub mod metrics_http;
pub mod shutdown;

pub use args::{DbArgs, LogArgs, LogFormat, NatsArgs};
pub use backoff::Backoff;
pub use shutdown::shutdown_token;
