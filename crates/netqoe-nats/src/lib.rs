//! JetStream names, connection and idempotent provisioning of the netqoe streams and consumer.
//!
//! The definitions are the JSON files in the workspace's `nats/` folder, embedded at build
//! time so that the binaries and the `nats` CLI use one source of truth. [`provision`] creates
//! each stream or consumer when missing, updates it when it differs, and reads back what the
//! server stored: nats-server 2.9 silently drops fields it does not know, so a definition that
//! did not stick is an error rather than a surprise later.
//!
//! Replicas are the operator's to change: a stream is created with the replicas asked for
//! (the file's 1 by default), and an existing stream keeps its replicas unless the binary was
//! explicitly given `--stream-replicas`, so a binary left at its defaults never scales a
//! 3-replica cluster stream back to 1. The flags that set these options are declared once,
//! for every binary that provisions, by [`provision_args!`] (in `args`).

pub mod args;

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

/// Stream of validated events.
pub const EVENTS_STREAM: &str = "QOE_EVENTS";
/// Stream of events the aggregator could not process.
pub const DLQ_STREAM: &str = "QOE_DLQ";
/// Durable pull consumer shared by every aggregator instance.
pub const AGGREGATOR_CONSUMER: &str = "aggregator";
/// Subject prefix of events; the client id follows.
pub const EVENTS_SUBJECT_PREFIX: &str = "qoe.events.";
/// Subject prefix of dead letters; the original subject follows.
pub const DLQ_SUBJECT_PREFIX: &str = "qoe.dlq.";

/// DLQ header: why the message could not be processed.
pub const HEADER_DLQ_REASON: &str = "Netqoe-Dlq-Reason";
/// DLQ header: how many times the message had been delivered.
pub const HEADER_DLQ_DELIVERIES: &str = "Netqoe-Dlq-Deliveries";
/// DLQ header: the subject the message was first published on.
pub const HEADER_DLQ_SUBJECT: &str = "Netqoe-Dlq-Subject";

const EVENTS_JSON: &str = include_str!("../../../nats/stream-qoe-events.json");
const DLQ_JSON: &str = include_str!("../../../nats/stream-qoe-dlq.json");
const CONSUMER_JSON: &str = include_str!("../../../nats/consumer-aggregator.json");

/// Subject an event of `client_id` is published on.
pub fn event_subject(client_id: &str) -> String {
    format!("{EVENTS_SUBJECT_PREFIX}{client_id}")
}

/// Errors of connecting and provisioning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid embedded definition {name}: {source}")]
    Definition {
        name: &'static str,
        source: serde_json::Error,
    },
    #[error("bad NATS URL {url:?}: {message}")]
    BadUrl { url: String, message: String },
    #[error("failed to connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        source: async_nats::ConnectError,
    },
    #[error("failed to {action} {name}: {message}")]
    Server {
        action: &'static str,
        name: String,
        message: String,
    },
    #[error("{name}: the server stored {field} = {stored} instead of {wanted} (is nats-server older than 2.9?)")]
    NotStored {
        name: String,
        field: &'static str,
        stored: String,
        wanted: String,
    },
}

/// Overrides applied to the embedded definitions (from each binary's flags).
#[derive(Debug, Clone, Default)]
pub struct ProvisionOptions {
    /// `max_bytes` of `QOE_EVENTS`; `None` keeps the file's value.
    pub events_max_bytes: Option<i64>,
    /// Replicas of both streams; `None` creates new streams with the file's value (1) and
    /// leaves an existing stream's replicas as they are.
    pub replicas: Option<usize>,
    /// `duplicate_window` of `QOE_EVENTS` (more than zero); `None` keeps the file's 2 min.
    pub duplicate_window: Option<Duration>,
}

/// Which definitions a binary provisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Ingest: `QOE_EVENTS` only.
    Events,
    /// Aggregator: both streams and the `aggregator` consumer.
    All,
}

/// The `QOE_EVENTS` definition with the options applied.
pub fn events_stream_config(opts: &ProvisionOptions) -> Result<stream::Config, Error> {
    let mut cfg = parse::<stream::Config>("stream-qoe-events.json", EVENTS_JSON)?;
    if let Some(max_bytes) = opts.events_max_bytes {
        cfg.max_bytes = max_bytes;
    }
    if let Some(replicas) = opts.replicas {
        cfg.num_replicas = replicas;
    }
    if let Some(window) = opts.duplicate_window {
        cfg.duplicate_window = window;
    }
    Ok(cfg)
}

/// The `QOE_DLQ` definition with the options applied.
pub fn dlq_stream_config(opts: &ProvisionOptions) -> Result<stream::Config, Error> {
    let mut cfg = parse::<stream::Config>("stream-qoe-dlq.json", DLQ_JSON)?;
    if let Some(replicas) = opts.replicas {
        cfg.num_replicas = replicas;
    }
    Ok(cfg)
}

/// The `aggregator` consumer definition.
pub fn aggregator_consumer_config() -> Result<consumer::pull::Config, Error> {
    parse("consumer-aggregator.json", CONSUMER_JSON)
}

fn parse<T: serde::de::DeserializeOwned>(name: &'static str, json: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|source| Error::Definition { name, source })
}

/// Connects to NATS, naming the connection after the binary.
///
/// The client reconnects by itself forever; when `wait_for_server` is false the first
/// connection is attempted in the background too, so a service can start (and report not
/// ready) while NATS is down.
pub async fn connect(
    url: &str,
    name: &str,
    wait_for_server: bool,
) -> Result<async_nats::Client, Error> {
    let mut opts = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                other => tracing::debug!(event = %other, "NATS client event"),
            }
        });
    if !wait_for_server {
        opts = opts.retry_on_initial_connect();
    }
    let servers = server_addrs(url)?;
    opts.connect(servers.as_slice())
        .await
        .map_err(|source| Error::Connect {
            url: netqoe_common::args::redact_url(url),
            source,
        })
}

/// The servers of a comma-separated list of NATS URLs (a cluster's nodes); the client
/// connects to one and fails over to the others.
pub fn server_addrs(urls: &str) -> Result<Vec<async_nats::ServerAddr>, Error> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| Error::BadUrl {
                    url: netqoe_common::args::redact_url(u),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|v| {
            if v.is_empty() {
                Err(Error::BadUrl {
                    url: String::new(),
                    message: "no NATS URL given".into(),
                })
            } else {
                Ok(v)
            }
        })
}

/// Creates or updates the streams (and consumer) of `scope`; safe to run any number of times.
pub async fn provision(
    js: &jetstream::Context,
    scope: Scope,
    opts: &ProvisionOptions,
) -> Result<(), Error> {
    ensure(js, events_stream_config(opts)?, opts.replicas).await?;
    if scope == Scope::All {
        ensure(js, dlq_stream_config(opts)?, opts.replicas).await?;
        ensure_consumer(js, EVENTS_STREAM, aggregator_consumer_config()?).await?;
    }
    Ok(())
}

fn server_err(action: &'static str, name: &str, e: impl std::fmt::Display) -> Error {
    Error::Server {
        action,
        name: name.to_string(),
        message: e.to_string(),
    }
}

/// What provisioning does to one stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamPlan {
    /// The stream is missing: create it with this definition.
    Create(stream::Config),
    /// The stream differs: update it to this definition.
    Update(stream::Config),
    /// The stream already matches this definition.
    Keep(stream::Config),
}

impl StreamPlan {
    /// The definition the stream should have afterwards.
    pub fn config(&self) -> &stream::Config {
        match self {
            StreamPlan::Create(c) | StreamPlan::Update(c) | StreamPlan::Keep(c) => c,
        }
    }
}

/// Decides what to do with a stream: `wanted` is the definition with the options applied,
/// `existing` what the server holds (None when missing), `replicas` the operator's explicit
/// choice. Without one, an existing stream keeps its replicas.
pub fn plan_stream(
    existing: Option<&stream::Config>,
    mut wanted: stream::Config,
    replicas: Option<usize>,
) -> StreamPlan {
    let Some(existing) = existing else {
        return StreamPlan::Create(wanted);
    };
    match replicas {
        Some(n) => wanted.num_replicas = n,
        None => wanted.num_replicas = existing.num_replicas,
    }
    if stream_differs(existing, &wanted) {
        StreamPlan::Update(wanted)
    } else {
        StreamPlan::Keep(wanted)
    }
}

/// Creates `wanted` when missing, updates it when it differs (replicas included), and
/// verifies what was stored.
pub async fn ensure_stream(js: &jetstream::Context, wanted: stream::Config) -> Result<(), Error> {
    let replicas = wanted.num_replicas;
    ensure(js, wanted, Some(replicas)).await
}

async fn ensure(
    js: &jetstream::Context,
    wanted: stream::Config,
    replicas: Option<usize>,
) -> Result<(), Error> {
    let name = wanted.name.clone();
    let existing = match js.get_stream(&name).await {
        Ok(mut existing) => Some(
            existing
                .info()
                .await
                .map_err(|e| server_err("read stream", &name, e))?
                .config
                .clone(),
        ),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref js_err)
                    if js_err.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            None
        }
        Err(e) => return Err(server_err("look up stream", &name, e)),
    };
    let plan = plan_stream(existing.as_ref(), wanted, replicas);
    let stored = match &plan {
        StreamPlan::Create(wanted) => {
            tracing::info!(stream = %name, replicas = wanted.num_replicas, "creating stream");
            js.create_stream(wanted.clone())
                .await
                .map_err(|e| server_err("create stream", &name, e))?
                .cached_info()
                .config
                .clone()
        }
        StreamPlan::Update(wanted) => {
            let from = existing.as_ref().map_or(0, |c| c.num_replicas);
            tracing::info!(stream = %name, replicas_from = from, replicas = wanted.num_replicas, "updating stream definition");
            js.update_stream(wanted)
                .await
                .map_err(|e| server_err("update stream", &name, e))?
                .config
        }
        StreamPlan::Keep(_) => existing.clone().unwrap_or_default(),
    };
    verify_stream(&stored, plan.config())
}

fn stream_differs(have: &stream::Config, want: &stream::Config) -> bool {
    have.subjects != want.subjects
        || have.max_bytes != want.max_bytes
        || have.max_age != want.max_age
        || have.max_message_size != want.max_message_size
        || have.discard != want.discard
        || have.duplicate_window != want.duplicate_window
        || have.num_replicas != want.num_replicas
        || have.description != want.description
}

fn check<T: std::fmt::Debug + PartialEq>(
    name: &str,
    field: &'static str,
    stored: T,
    wanted: T,
) -> Result<(), Error> {
    if stored == wanted {
        Ok(())
    } else {
        Err(Error::NotStored {
            name: name.to_string(),
            field,
            stored: format!("{stored:?}"),
            wanted: format!("{wanted:?}"),
        })
    }
}

fn verify_stream(stored: &stream::Config, wanted: &stream::Config) -> Result<(), Error> {
    let n = &wanted.name;
    check(n, "subjects", &stored.subjects, &wanted.subjects)?;
    check(n, "retention", stored.retention, wanted.retention)?;
    check(n, "storage", stored.storage, wanted.storage)?;
    check(n, "discard", stored.discard, wanted.discard)?;
    check(n, "max_age", stored.max_age, wanted.max_age)?;
    check(n, "max_bytes", stored.max_bytes, wanted.max_bytes)?;
    check(
        n,
        "duplicate_window",
        stored.duplicate_window,
        wanted.duplicate_window,
    )?;
    check(n, "num_replicas", stored.num_replicas, wanted.num_replicas)
}

/// Creates or updates the durable consumer `wanted` on `stream_name` and verifies it.
pub async fn ensure_consumer(
    js: &jetstream::Context,
    stream_name: &str,
    wanted: consumer::pull::Config,
) -> Result<(), Error> {
    let name = wanted.durable_name.clone().unwrap_or_default();
    let stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| server_err("look up stream", stream_name, e))?;
    let existing = stream.consumer_info(&name).await.ok();
    let needs_write = existing.as_ref().is_none_or(|info| {
        let have = &info.config;
        have.ack_wait != wanted.ack_wait
            || have.max_deliver != wanted.max_deliver
            || have.max_ack_pending != wanted.max_ack_pending
            || have.max_waiting != wanted.max_waiting
            || have.filter_subject != wanted.filter_subject
            || have.description != wanted.description
    });
    if needs_write {
        tracing::info!(consumer = %name, stream = %stream_name, created = existing.is_none(), "writing consumer definition");
        stream
            .create_consumer(wanted.clone())
            .await
            .map_err(|e| server_err("create or update consumer", &name, e))?;
    }
    let info = stream
        .consumer_info(&name)
        .await
        .map_err(|e| server_err("read consumer", &name, e))?;
    let c = &info.config;
    check(&name, "ack_policy", c.ack_policy, wanted.ack_policy)?;
    check(&name, "ack_wait", c.ack_wait, wanted.ack_wait)?;
    check(
        &name,
        "filter_subject",
        &c.filter_subject,
        &wanted.filter_subject,
    )?;
    check(&name, "max_deliver", c.max_deliver, wanted.max_deliver)?;
    check(
        &name,
        "max_ack_pending",
        c.max_ack_pending,
        wanted.max_ack_pending,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_is_a_comma_separated_list_of_urls() {
        let servers = server_addrs("nats://n1:4222, nats://n2:4223,nats://n3:4224").unwrap();
        let ports: Vec<u16> = servers.iter().map(|s| s.port()).collect();
        assert_eq!(ports, [4222, 4223, 4224]);
        assert_eq!(server_addrs("nats://n1:4222").unwrap().len(), 1);
        let err = server_addrs("nats://u:secret@n1:4222,http://[::1").unwrap_err();
        assert!(err.to_string().starts_with("bad NATS URL"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
        assert!(server_addrs(" , ").is_err());
    }

    #[test]
    fn embedded_definitions_parse_with_the_contract_values() {
        let events = events_stream_config(&ProvisionOptions::default()).unwrap();
        assert_eq!(events.name, EVENTS_STREAM);
        assert_eq!(events.subjects, vec!["qoe.events.>".to_string()]);
        assert_eq!(events.discard, stream::DiscardPolicy::New);
        assert_eq!(events.storage, stream::StorageType::File);
        assert_eq!(events.retention, stream::RetentionPolicy::Limits);
        assert_eq!(events.max_age, Duration::from_secs(7 * 86_400));
        assert_eq!(events.duplicate_window, Duration::from_secs(120));
        assert_eq!(events.num_replicas, 1);

        let dlq = dlq_stream_config(&ProvisionOptions::default()).unwrap();
        assert_eq!(dlq.name, DLQ_STREAM);
        assert_eq!(dlq.subjects, vec!["qoe.dlq.>".to_string()]);
        assert_eq!(dlq.max_age, Duration::from_secs(30 * 86_400));

        let consumer = aggregator_consumer_config().unwrap();
        assert_eq!(consumer.durable_name.as_deref(), Some(AGGREGATOR_CONSUMER));
        assert_eq!(consumer.ack_policy, consumer::AckPolicy::Explicit);
        assert_eq!(consumer.ack_wait, Duration::from_secs(30));
        assert_eq!(consumer.filter_subject, "qoe.events.>");
    }

    #[test]
    fn options_override_size_and_replicas() {
        let opts = ProvisionOptions {
            events_max_bytes: Some(1 << 20),
            replicas: Some(3),
            duplicate_window: None,
        };
        let events = events_stream_config(&opts).unwrap();
        assert_eq!(events.max_bytes, 1 << 20);
        assert_eq!(events.num_replicas, 3);
        assert_eq!(events.duplicate_window, Duration::from_secs(120));
        assert_eq!(dlq_stream_config(&opts).unwrap().num_replicas, 3);
    }

    crate::provision_args! {
        /// The block as a binary declares it.
        struct TestProvisionArgs, env_prefix = "NETQOE_NATS_TEST_"
    }

    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        provision: TestProvisionArgs,
    }

    fn parse(args: &[&str]) -> Result<TestCli, clap::Error> {
        clap::Parser::try_parse_from(std::iter::once("netqoe-test").chain(args.iter().copied()))
    }

    #[test]
    fn the_duplicate_window_flag_lands_in_the_events_stream_only() {
        let cli = parse(&["--stream-duplicate-window", "5m"]).unwrap();
        let opts = cli.provision.options();
        assert_eq!(opts.duplicate_window, Some(Duration::from_secs(300)));
        let events = events_stream_config(&opts).unwrap();
        assert_eq!(events.duplicate_window, Duration::from_secs(300));
        let file = events_stream_config(&ProvisionOptions::default()).unwrap();
        assert_eq!(
            stream::Config {
                duplicate_window: file.duplicate_window,
                ..events
            },
            file,
            "nothing else changes"
        );
        let dlq = dlq_stream_config(&ProvisionOptions::default()).unwrap();
        assert_eq!(dlq_stream_config(&opts).unwrap(), dlq);
    }

    #[test]
    fn the_provisioning_flags_map_to_options() {
        let cli = parse(&[]).unwrap();
        assert!(cli.provision.provision());
        let opts = cli.provision.options();
        assert_eq!(
            (opts.events_max_bytes, opts.replicas, opts.duplicate_window),
            (None, None, None)
        );
        let cli = parse(&[
            "--no-provision",
            "--stream-max-bytes=1048576",
            "--stream-replicas=3",
            "--stream-duplicate-window=90s",
        ])
        .unwrap();
        assert!(!cli.provision.provision());
        let opts = cli.provision.options();
        assert_eq!(
            (opts.events_max_bytes, opts.replicas, opts.duplicate_window),
            (Some(1 << 20), Some(3), Some(Duration::from_secs(90)))
        );
        let env = <TestCli as clap::CommandFactory>::command()
            .get_arguments()
            .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
            .collect::<Vec<_>>();
        assert_eq!(
            env,
            [
                "NETQOE_NATS_TEST_NO_PROVISION",
                "NETQOE_NATS_TEST_STREAM_MAX_BYTES",
                "NETQOE_NATS_TEST_STREAM_REPLICAS",
                "NETQOE_NATS_TEST_STREAM_DUPLICATE_WINDOW",
            ]
        );
    }

    #[test]
    fn a_zero_duplicate_window_is_refused_naming_the_flag() {
        for zero in ["0s", "0ms", "0"] {
            let error = parse(&["--stream-duplicate-window", zero])
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("--stream-duplicate-window") && error.contains("more than zero"),
                "{zero}: {error}"
            );
        }
        let error = parse(&["--stream-duplicate-window", "soon"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--stream-duplicate-window"), "{error}");
    }

    #[test]
    fn replicas_change_only_when_given() {
        let file = events_stream_config(&ProvisionOptions::default()).unwrap();
        let with_replicas = |n: usize| stream::Config {
            num_replicas: n,
            ..file.clone()
        };
        let r3 = with_replicas(3);
        // (existing, flag) -> plan
        let cases = [
            (None, None, StreamPlan::Create(with_replicas(1))),
            (None, Some(3), StreamPlan::Create(with_replicas(3))),
            (Some(&r3), None, StreamPlan::Keep(with_replicas(3))),
            (Some(&r3), Some(3), StreamPlan::Keep(with_replicas(3))),
            (Some(&r3), Some(1), StreamPlan::Update(with_replicas(1))),
            (Some(&file), Some(3), StreamPlan::Update(with_replicas(3))),
            (Some(&file), None, StreamPlan::Keep(with_replicas(1))),
        ];
        for (existing, flag, want) in cases {
            let wanted = events_stream_config(&ProvisionOptions {
                replicas: flag,
                ..Default::default()
            })
            .unwrap();
            assert_eq!(
                plan_stream(existing, wanted, flag),
                want,
                "existing replicas {:?}, flag {flag:?}",
                existing.map(|c| c.num_replicas)
            );
        }
        // another change to a 3-replica stream, without the flag, keeps its 3 replicas
        let smaller = events_stream_config(&ProvisionOptions {
            events_max_bytes: Some(1 << 20),
            ..Default::default()
        })
        .unwrap();
        match plan_stream(Some(&r3), smaller, None) {
            StreamPlan::Update(c) => assert_eq!((c.max_bytes, c.num_replicas), (1 << 20, 3)),
            other => panic!("expected an update, got {other:?}"),
        }
    }

    #[test]
    fn subjects_carry_the_client_id() {
        assert_eq!(event_subject("probe-a1"), "qoe.events.probe-a1");
    }
}
