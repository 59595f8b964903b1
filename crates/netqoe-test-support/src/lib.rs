//! Real nats-server and PostgreSQL for integration tests and benchmarks.
//!
//! Each server runs as a child process on a free loopback port with its data in a temporary
//! directory, is waited on until it accepts work, and is stopped by its process id when the
//! handle is dropped. Either can be stopped and restarted mid-test (same port, same data) for
//! fault tests. A missing server binary is an error that names the binary and `make setup`,
//! never a silently skipped test. Lifecycle lines go straight to stderr, so they show in the
//! test output even when libtest captures `println!`.

pub mod browser;
mod nats;
mod postgres;
mod process;
mod service;

pub use nats::NatsServer;
pub use postgres::PgServer;
pub use process::free_port;
pub use service::{http_get, metric_sum, product_binary, Service};

/// Writes a line about a server's lifecycle to the real stderr (not captured by libtest).
pub(crate) fn announce(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "[test-support] {line}");
}
