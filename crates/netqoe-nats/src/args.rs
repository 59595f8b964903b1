//! The stream-provisioning flags, declared once for every binary that provisions (ingest and
//! the aggregator), each read from the binary's own `NETQOE_<BINARY>_*` variable.

use std::time::Duration;

/// Declares a clap argument block (`#[derive(clap::Args)]`) holding the stream-provisioning
/// flags `--no-provision`, `--stream-max-bytes`, `--stream-replicas` and
/// `--stream-duplicate-window`, each read from the variable named `env_prefix` followed by
/// the flag (`NETQOE_INGEST_` gives `NETQOE_INGEST_STREAM_MAX_BYTES`). The flags are global,
/// so a binary with subcommands takes them before or after the subcommand. The crate calling
/// it depends on `clap` (the derive names it).
///
/// ```
/// netqoe_nats::provision_args! {
///     /// Stream provisioning of netqoe-example.
///     pub struct ProvisionArgs, env_prefix = "NETQOE_EXAMPLE_"
/// }
/// #[derive(clap::Parser)]
/// struct Cli {
///     #[command(flatten)]
///     provision: ProvisionArgs,
/// }
/// let cli = <Cli as clap::Parser>::parse_from(["example", "--stream-replicas", "3"]);
/// assert!(cli.provision.provision());
/// assert_eq!(cli.provision.options().replicas, Some(3));
/// ```
#[macro_export]
macro_rules! provision_args {
    ($(#[$meta:meta])* $vis:vis struct $name:ident, env_prefix = $prefix:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, ::clap::Args)]
        $vis struct $name {
            /// Do not create or update the streams (and the consumer) at start.
            #[arg(long, global = true, env = concat!($prefix, "NO_PROVISION"))]
            pub no_provision: bool,
            /// max_bytes of QOE_EVENTS when provisioning (default: nats/stream-qoe-events.json).
            #[arg(long, global = true, env = concat!($prefix, "STREAM_MAX_BYTES"))]
            pub stream_max_bytes: Option<i64>,
            /// Replicas of the streams when provisioning (3 in a cluster). Unset: an existing
            /// stream keeps its replicas, a new one gets 1.
            #[arg(long, global = true, env = concat!($prefix, "STREAM_REPLICAS"))]
            pub stream_replicas: Option<usize>,
            /// duplicate_window of QOE_EVENTS when provisioning: how long a Nats-Msg-Id is
            /// remembered, so an event sent again within it is stored once (default:
            /// nats/stream-qoe-events.json, 2m; more than zero).
            #[arg(
                long,
                global = true,
                env = concat!($prefix, "STREAM_DUPLICATE_WINDOW"),
                value_name = "DURATION",
                value_parser = $crate::args::parse_duplicate_window
            )]
            pub stream_duplicate_window: Option<::std::time::Duration>,
        }

        impl $name {
            /// Whether the binary creates or updates its streams at start.
            pub fn provision(&self) -> bool {
                !self.no_provision
            }

            /// The overrides of the embedded stream definitions.
            pub fn options(&self) -> $crate::ProvisionOptions {
                $crate::ProvisionOptions {
                    events_max_bytes: self.stream_max_bytes,
                    replicas: self.stream_replicas,
                    duplicate_window: self.stream_duplicate_window,
                }
            }
        }
    };
}

/// Parses `--stream-duplicate-window` (`"2m"`, `"90s"`), refusing zero: JetStream would
/// take it for "use the server's default", not for "remember no id".
pub fn parse_duplicate_window(value: &str) -> Result<Duration, String> {
    let window = humantime::parse_duration(value).map_err(|e| e.to_string())?;
    if window.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(window)
}
