//! Provisioning against a real nats-server: idempotent, read back, updates applied, replicas
//! left alone unless asked for.

mod cluster;

use std::time::Duration;

use async_nats::jetstream;
use netqoe_nats::{
    provision, ProvisionOptions, Scope, AGGREGATOR_CONSUMER, DLQ_STREAM, EVENTS_STREAM,
};
use netqoe_test_support::NatsServer;

#[tokio::test]
async fn provisioning_twice_is_idempotent_and_matches_the_spec() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let client = netqoe_nats::connect(&nats.url(), "netqoe-test", true).await?;
    let js = jetstream::new(client);
    let opts = ProvisionOptions::default();

    provision(&js, Scope::All, &opts).await?;
    provision(&js, Scope::All, &opts).await?;

    let mut events = js.get_stream(EVENTS_STREAM).await?;
    let info = events.info().await?;
    assert_eq!(info.config.subjects, vec!["qoe.events.>".to_string()]);
    assert_eq!(info.config.discard, jetstream::stream::DiscardPolicy::New);
    assert_eq!(info.config.storage, jetstream::stream::StorageType::File);
    assert_eq!(info.config.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));

    let mut dlq = js.get_stream(DLQ_STREAM).await?;
    assert_eq!(
        dlq.info().await?.config.max_age,
        Duration::from_secs(30 * 86_400)
    );

    let consumer = events.consumer_info(AGGREGATOR_CONSUMER).await?;
    assert_eq!(consumer.config.ack_wait, Duration::from_secs(30));
    assert_eq!(
        consumer.config.ack_policy,
        jetstream::consumer::AckPolicy::Explicit
    );
    assert_eq!(consumer.config.filter_subject, "qoe.events.>");

    let names: Vec<String> = {
        use futures::TryStreamExt;
        js.stream_names().try_collect().await?
    };
    assert_eq!(names.len(), 2, "no extra streams: {names:?}");
    Ok(())
}

#[tokio::test]
async fn a_changed_size_limit_is_applied_on_the_next_start() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(netqoe_nats::connect(&nats.url(), "netqoe-test", true).await?);
    provision(&js, Scope::Events, &ProvisionOptions::default()).await?;
    let smaller = ProvisionOptions {
        events_max_bytes: Some(64 << 20),
        replicas: None,
        ..Default::default()
    };
    provision(&js, Scope::Events, &smaller).await?;
    let info = js
        .get_stream(EVENTS_STREAM)
        .await?
        .info()
        .await?
        .config
        .clone();
    assert_eq!(info.max_bytes, 64 << 20);
    assert!(
        js.get_stream(DLQ_STREAM).await.is_err(),
        "ingest scope must not create the DLQ"
    );
    Ok(())
}

#[tokio::test]
async fn a_changed_duplicate_window_is_applied_and_read_back() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(netqoe_nats::connect(&nats.url(), "netqoe-test", true).await?);
    provision(&js, Scope::Events, &ProvisionOptions::default()).await?;
    let longer = ProvisionOptions {
        duplicate_window: Some(Duration::from_secs(600)),
        ..Default::default()
    };
    provision(&js, Scope::Events, &longer).await?;
    let stored = |js: jetstream::Context| async move {
        anyhow::Ok(
            js.get_stream(EVENTS_STREAM)
                .await?
                .info()
                .await?
                .config
                .duplicate_window,
        )
    };
    assert_eq!(stored(js.clone()).await?, Duration::from_secs(600));
    // without the option the file's window comes back
    provision(&js, Scope::Events, &ProvisionOptions::default()).await?;
    assert_eq!(stored(js.clone()).await?, Duration::from_secs(120));
    Ok(())
}

#[tokio::test]
async fn deduplicates_by_msg_id_within_the_window() -> anyhow::Result<()> {
    let nats = NatsServer::start()?;
    let js = jetstream::new(netqoe_nats::connect(&nats.url(), "netqoe-test", true).await?);
    provision(&js, Scope::Events, &ProvisionOptions::default()).await?;
    let mut duplicates = 0;
    for _ in 0..2 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "0190b5c2-7a1e-7c3a-9b1e-3f6f0e2a1b2c");
        let ack = js
            .publish_with_headers(netqoe_nats::event_subject("probe-a1"), headers, "{}".into())
            .await?
            .await?;
        duplicates += usize::from(ack.duplicate);
    }
    assert_eq!(duplicates, 1);
    let info = js
        .get_stream(EVENTS_STREAM)
        .await?
        .info()
        .await?
        .state
        .messages;
    assert_eq!(info, 1);
    Ok(())
}

#[tokio::test]
async fn replicas_left_unset_keep_the_stream_s_replicas_while_other_changes_apply(
) -> anyhow::Result<()> {
    // A single node holds only replicas 1 (the 3-replica case is in cluster.rs); here the
    // server takes the update that path makes: the stored replicas carried over, the changed
    // size applied, and the read-back check satisfied.
    let nats = NatsServer::start()?;
    let js = jetstream::new(netqoe_nats::connect(&nats.url(), "netqoe-test", true).await?);
    let explicit = ProvisionOptions {
        events_max_bytes: None,
        replicas: Some(1),
        ..Default::default()
    };
    provision(&js, Scope::All, &explicit).await?;
    let unset = ProvisionOptions {
        events_max_bytes: Some(32 << 20),
        replicas: None,
        ..Default::default()
    };
    provision(&js, Scope::All, &unset).await?;
    provision(&js, Scope::All, &unset).await?;
    for name in [EVENTS_STREAM, DLQ_STREAM] {
        let config = js.get_stream(name).await?.info().await?.config.clone();
        assert_eq!(config.num_replicas, 1, "{name}");
    }
    let events = js
        .get_stream(EVENTS_STREAM)
        .await?
        .info()
        .await?
        .config
        .clone();
    assert_eq!(events.max_bytes, 32 << 20);

    // the plan a second start makes against what the server holds: nothing to do
    let wanted = netqoe_nats::events_stream_config(&unset)?;
    assert!(matches!(
        netqoe_nats::plan_stream(Some(&events), wanted, None),
        netqoe_nats::StreamPlan::Keep(_)
    ));
    Ok(())
}
