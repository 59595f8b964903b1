//! Process exit codes shared by the binaries, documented in docs/operations.md, and the one
//! error type every binary's library returns to its `main`, which says which code to exit
//! with.

use std::process::ExitCode;

/// Finished normally (also after a graceful SIGTERM).
pub const OK: u8 = 0;
/// Failed at run time (lost a dependency it cannot do without, IO error).
pub const FAILURE: u8 = 1;
/// Bad command line (clap's own code).
pub const USAGE: u8 = 2;
/// Bad configuration: a file or value that parses but cannot be used.
pub const CONFIG: u8 = 3;
/// A dependency (NATS, Postgres, a listening address) could not be reached, bound or
/// provisioned at start.
pub const UNAVAILABLE: u8 = 4;
/// Ran, but a score it checks was below its threshold (the diagnoser's `evaluate`, the
/// demo's `up`).
pub const BELOW_THRESHOLD: u8 = 5;

/// Why a binary stopped with an error; [`Failure::exit_code`] is the code it exits with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Configuration that parses but cannot be used (exit 3).
    #[error("invalid configuration: {0:#}")]
    Config(anyhow::Error),
    /// A dependency or address unavailable at start (exit 4).
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Failed while running (exit 1).
    #[error("{0:#}")]
    Failed(anyhow::Error),
}

impl Failure {
    /// A configuration failure with `message` (exit 3).
    pub fn config(message: impl std::fmt::Display) -> Failure {
        Failure::Config(anyhow::anyhow!("{message}"))
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => CONFIG,
            Failure::Unavailable(_) => UNAVAILABLE,
            Failure::Failed(_) => FAILURE,
        }
    }
}

/// The exit of `binary` after `result`: 0, or the failure's code after logging it once.
pub fn exit_with(binary: &str, result: Result<(), Failure>) -> ExitCode {
    exit_with_code(binary, result.map(|()| OK))
}

/// As [`exit_with`] for a command whose success has a code of its own (a check that ran and
/// found a problem, say).
pub fn exit_with_code(binary: &str, result: Result<u8, Failure>) -> ExitCode {
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            tracing::error!(error = %failure, "{binary} stopped");
            ExitCode::from(failure.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_documented_code_and_message() {
        let config = Failure::config("key `interval`: must be at least 1s");
        assert_eq!(config.exit_code(), 3);
        assert_eq!(
            config.to_string(),
            "invalid configuration: key `interval`: must be at least 1s"
        );
        let context = anyhow::anyhow!("connection refused").context("cannot reach NATS");
        let unavailable = Failure::Unavailable(context);
        assert_eq!(unavailable.exit_code(), 4);
        assert_eq!(
            unavailable.to_string(),
            "unavailable: cannot reach NATS: connection refused"
        );
        assert_eq!(Failure::Failed(anyhow::anyhow!("disk full")).exit_code(), 1);
    }
}
