//! Command line (clap, every flag with its `NETQOE_INGEST_*` variable) and the validated
//! settings `run` works with; each default is declared once, below, for both.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use netqoe_common::args::redact_url;
use netqoe_common::{LogArgs, NatsArgs};

/// Default `--rate`: sustained events per second of a token.
pub const DEFAULT_RATE: NonZeroU32 = NonZeroU32::new(200).unwrap();
/// Default `--burst`: events a token may send at once.
pub const DEFAULT_BURST: NonZeroU32 = NonZeroU32::new(1000).unwrap();
/// Default `--max-body-bytes` (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// Default `--max-batch`.
pub const DEFAULT_MAX_BATCH: usize = 1000;
/// Default `--ack-timeout`.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `--header-timeout`.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--body-timeout`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--max-in-flight`.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// Default `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default `--publish-wait`.
pub const DEFAULT_PUBLISH_WAIT: Duration = Duration::from_secs(2);
/// Default `--shutdown-timeout`.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

netqoe_nats::provision_args! {
    /// Provisioning of QOE_EVENTS at start (`NETQOE_INGEST_NO_PROVISION`, `NETQOE_INGEST_STREAM_*`).
    pub struct ProvisionArgs, env_prefix = "NETQOE_INGEST_"
}

#[derive(Debug, Parser)]
#[command(
    name = "netqoe-ingest",
    version,
    about = "Authenticated, rate-limited HTTP ingest of netqoe events into NATS JetStream",
    long_about = "Accepts events on POST /api/v1/events (and /events): one JSON object, a JSON \
array or NDJSON, optionally gzip-compressed. Each request is validated as a whole and answered \
202 only after JetStream acknowledged every event. SIGHUP reloads the tokens file and limits; \
SIGTERM drains in-flight requests and exits."
)]
pub struct Cli {
    /// Address of the events API.
    #[arg(long, env = "NETQOE_INGEST_LISTEN", default_value = "0.0.0.0:8081")]
    pub listen: SocketAddr,
    /// Address of /metrics (also serves /healthz and /readyz).
    #[arg(
        long,
        env = "NETQOE_INGEST_METRICS_LISTEN",
        default_value = "0.0.0.0:9101"
    )]
    pub metrics_listen: SocketAddr,
    /// TOML file with one [[tokens]] table per bearer token (reloaded on SIGHUP).
    #[arg(long, env = "NETQOE_INGEST_TOKENS_FILE")]
    pub tokens_file: Option<PathBuf>,
    /// Accept requests without a token. Only for labs and load tests.
    #[arg(long, env = "NETQOE_INGEST_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Default sustained rate per token, in events per second.
    #[arg(long, env = "NETQOE_INGEST_RATE", default_value_t = DEFAULT_RATE)]
    pub rate: NonZeroU32,
    /// Default burst per token, in events: also the most events one request of such a token
    /// can hold. Ingest refuses to start when no token's burst reaches --max-batch.
    #[arg(long, env = "NETQOE_INGEST_BURST", default_value_t = DEFAULT_BURST)]
    pub burst: NonZeroU32,
    /// Largest accepted request body in bytes, before and after gzip decompression.
    #[arg(long, env = "NETQOE_INGEST_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Most events accepted in one request (a token's burst can lower it for that token).
    #[arg(long, env = "NETQOE_INGEST_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// How long to wait for JetStream to acknowledge a request's events.
    #[arg(long, env = "NETQOE_INGEST_ACK_TIMEOUT", default_value_t = DEFAULT_ACK_TIMEOUT.into())]
    pub ack_timeout: humantime::Duration,
    /// Time a client has to send the request headers, in total (the connection is closed).
    #[arg(long, env = "NETQOE_INGEST_HEADER_TIMEOUT", default_value_t = DEFAULT_HEADER_TIMEOUT.into())]
    pub header_timeout: humantime::Duration,
    /// Time a client has to send the whole request body, in total (408 after it).
    #[arg(long, env = "NETQOE_INGEST_BODY_TIMEOUT", default_value_t = DEFAULT_BODY_TIMEOUT.into())]
    pub body_timeout: humantime::Duration,
    /// Most events requests served at once; more are answered 503 with Retry-After.
    #[arg(long, env = "NETQOE_INGEST_MAX_IN_FLIGHT", default_value_t = DEFAULT_MAX_IN_FLIGHT)]
    pub max_in_flight: usize,
    /// Most open API connections; more are answered 503 with Retry-After and closed.
    #[arg(long, env = "NETQOE_INGEST_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Longest a request waits for room in the window of unacknowledged publishes before
    /// it is answered 503 with Retry-After (JetStream slower than the incoming events).
    #[arg(long, env = "NETQOE_INGEST_PUBLISH_WAIT", default_value_t = DEFAULT_PUBLISH_WAIT.into())]
    pub publish_wait: humantime::Duration,
    /// Longest a SIGTERM drain waits for in-flight requests.
    #[arg(long, env = "NETQOE_INGEST_SHUTDOWN_TIMEOUT", default_value_t = DEFAULT_SHUTDOWN_TIMEOUT.into())]
    pub shutdown_timeout: humantime::Duration,
    #[command(flatten)]
    pub provision: ProvisionArgs,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Where tokens come from. `Debug` never prints inline tokens.
#[derive(Clone)]
pub enum AuthSource {
    /// A tokens file, reloaded on SIGHUP.
    File(PathBuf),
    /// Tokens TOML given directly (tests, embedding).
    Inline(String),
    /// No authentication (`--insecure-no-auth`).
    Disabled,
}

impl std::fmt::Debug for AuthSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthSource::File(path) => f.debug_tuple("File").field(path).finish(),
            AuthSource::Inline(text) => write!(f, "Inline(<{} bytes redacted>)", text.len()),
            AuthSource::Disabled => f.write_str("Disabled"),
        }
    }
}

/// Everything `run` needs besides its listeners. `Debug` redacts tokens and the password
/// of the NATS URL.
#[derive(Clone)]
pub struct Settings {
    pub nats_url: String,
    pub auth: AuthSource,
    pub rate: NonZeroU32,
    pub burst: NonZeroU32,
    pub max_body_bytes: usize,
    pub max_batch: usize,
    pub ack_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_in_flight: usize,
    pub max_connections: usize,
    pub publish_wait: Duration,
    /// Unacknowledged publishes allowed across all requests.
    pub ack_window: usize,
    pub shutdown_timeout: Duration,
    pub provision: bool,
    pub provision_options: netqoe_nats::ProvisionOptions,
    /// How often readiness (NATS connection, stream presence) is re-checked.
    pub readiness_interval: Duration,
}

impl Settings {
    /// Defaults of the command line, for `nats_url`, with authentication disabled.
    pub fn new(nats_url: &str) -> Settings {
        Settings {
            nats_url: nats_url.to_string(),
            auth: AuthSource::Disabled,
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            publish_wait: DEFAULT_PUBLISH_WAIT,
            ack_window: crate::publish::ACK_WINDOW,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            provision: true,
            provision_options: Default::default(),
            readiness_interval: Duration::from_secs(1),
        }
    }

    /// Settings from the command line; fails when no tokens are configured and auth is on.
    pub fn from_cli(cli: &Cli) -> Result<Settings, String> {
        let auth = match (&cli.tokens_file, cli.insecure_no_auth) {
            (Some(path), _) => AuthSource::File(path.clone()),
            (None, true) => AuthSource::Disabled,
            (None, false) => {
                return Err(
                    "no tokens configured: pass --tokens-file (NETQOE_INGEST_TOKENS_FILE), or --insecure-no-auth for a lab"
                        .into(),
                )
            }
        };
        if cli.max_batch == 0 || cli.max_body_bytes == 0 {
            return Err("--max-batch and --max-body-bytes must be at least 1".into());
        }
        if cli.max_in_flight == 0 || cli.max_connections == 0 {
            return Err("--max-in-flight and --max-connections must be at least 1".into());
        }
        Ok(Settings {
            auth,
            rate: cli.rate,
            burst: cli.burst,
            max_body_bytes: cli.max_body_bytes,
            max_batch: cli.max_batch,
            ack_timeout: cli.ack_timeout.into(),
            header_timeout: cli.header_timeout.into(),
            body_timeout: cli.body_timeout.into(),
            max_in_flight: cli.max_in_flight,
            max_connections: cli.max_connections,
            publish_wait: cli.publish_wait.into(),
            shutdown_timeout: cli.shutdown_timeout.into(),
            provision: cli.provision.provision(),
            provision_options: cli.provision.options(),
            ..Settings::new(&cli.nats.nats_url)
        })
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("nats_url", &redact_url(&self.nats_url))
            .field("auth", &self.auth)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_batch", &self.max_batch)
            .field("ack_timeout", &self.ack_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_connections", &self.max_connections)
            .field("publish_wait", &self.publish_wait)
            .field("ack_window", &self.ack_window)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("provision", &self.provision)
            .field("provision_options", &self.provision_options)
            .field("readiness_interval", &self.readiness_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_defaults_are_the_settings_defaults() {
        let cli = Cli::try_parse_from(["netqoe-ingest", "--insecure-no-auth"]).unwrap();
        let settings = Settings::from_cli(&cli).unwrap();
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", Settings::new(&cli.nats.nats_url))
        );
    }

    #[test]
    fn provisioning_flags_read_the_ingest_variables() {
        let cli = Cli::try_parse_from([
            "netqoe-ingest",
            "--insecure-no-auth",
            "--no-provision",
            "--stream-replicas=3",
            "--stream-duplicate-window=10m",
        ])
        .unwrap();
        let settings = Settings::from_cli(&cli).unwrap();
        assert!(!settings.provision);
        assert_eq!(settings.provision_options.replicas, Some(3));
        assert_eq!(
            settings.provision_options.duplicate_window,
            Some(Duration::from_secs(600))
        );
        let cmd = <Cli as clap::CommandFactory>::command();
        for flag in
            "NO_PROVISION STREAM_MAX_BYTES STREAM_REPLICAS STREAM_DUPLICATE_WINDOW".split(' ')
        {
            let name = format!("NETQOE_INGEST_{flag}");
            let env = Some(std::ffi::OsStr::new(&name));
            assert!(cmd.get_arguments().any(|a| a.get_env() == env), "{name}");
        }
        let zero = Cli::try_parse_from([
            "netqoe-ingest",
            "--insecure-no-auth",
            "--stream-duplicate-window=0s",
        ])
        .unwrap_err()
        .to_string();
        assert!(zero.contains("--stream-duplicate-window"), "{zero}");
    }

    #[test]
    fn debug_output_never_holds_tokens_or_passwords() {
        let mut settings =
            Settings::new("nats://ingest:hunter2-password@nats-1:4222,nats://nats-2:4222");
        settings.auth = AuthSource::Inline(
            "[[tokens]]\ntoken = \"plain-secret-token-0123\"\nclients = [\"*\"]\n".into(),
        );
        let dbg = format!("{settings:?}");
        assert!(!dbg.contains("plain-secret-token-0123"), "{dbg}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(
            dbg.contains("nats://ingest:***@nats-1:4222,nats://nats-2:4222"),
            "{dbg}"
        );
        assert!(dbg.contains("Inline(<"), "{dbg}");
    }
}
