//! Clap argument blocks shared by several binaries. Their flags are global: a binary with
//! subcommands takes them before or after the subcommand.

use clap::{Args, ValueEnum};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Logging options (the level comes from `RUST_LOG`, default `info`).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format on stderr.
    #[arg(long, global = true, env = "NETQOE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
}

/// Where NATS is.
#[derive(Debug, Clone, Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma separated for a cluster.
    #[arg(
        long,
        global = true,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
}

/// Where Postgres is. The URL may hold a password, so it is never printed.
#[derive(Clone, Args)]
pub struct DbArgs {
    /// Postgres URL.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/netqoe",
        hide_env_values = true,
        hide_default_value = false
    )]
    pub database_url: String,
}

impl std::fmt::Debug for DbArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbArgs")
            .field("database_url", &redact_url(&self.database_url))
            .finish()
    }
}

/// `scheme://user:secret@host/db` → `scheme://user:***@host/db`, for each URL of a
/// comma-separated list; a NATS URL's user part without a colon is a token and is hidden
/// whole (`nats://***@host`), a Postgres user without a password is kept.
pub fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(redact_one)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None if ["nats", "tls", "ws", "wss"].contains(&scheme.trim()) => {
            format!("{scheme}://***@{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/netqoe"),
            "postgres://app:***@db:5432/netqoe"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/netqoe"),
            "postgres://postgres@127.0.0.1/netqoe"
        );
        assert_eq!(
            redact_url("nats://a:pw@n1:4222,nats://s3cr3t-token@n2:4222,nats://n3:4222"),
            "nats://a:***@n1:4222,nats://***@n2:4222,nats://n3:4222"
        );
        let args = DbArgs {
            database_url: "postgres://u:hunter2@h/d".into(),
        };
        assert!(!format!("{args:?}").contains("hunter2"));
    }
}
