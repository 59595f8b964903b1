//! Process exit codes shared by the binaries, documented in docs/operations.md.

/// Finished normally (also after a graceful SIGTERM).
pub const OK: u8 = 0;
/// Failed at run time (lost a dependency it cannot do without, IO error).
pub const FAILURE: u8 = 1;
/// Bad command line (clap's own code).
pub const USAGE: u8 = 2;
/// Bad configuration: a file or value that parses but cannot be used.
pub const CONFIG: u8 = 3;
/// A dependency (NATS, Postgres) could not be reached or provisioned at start.
pub const UNAVAILABLE: u8 = 4;
