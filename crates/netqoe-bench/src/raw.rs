//! Raw limits of the machine: pipelined JetStream publish, pull-and-ack consumption, and
//! batched Postgres insert.

use std::time::Instant;

use anyhow::Context;
use futures::stream::{FuturesUnordered, StreamExt};

use crate::harness::{report, sample_event, Env};

/// Acks kept in flight while publishing (async-nats allows about 5 000 pending).
pub const PUBLISH_WINDOW: usize = 4096;

pub async fn run(env: &Env) -> anyhow::Result<()> {
    let n = env.scaled(200_000);
    let js_rate = jetstream_publish_per_s(n).await?;
    report("raw_jetstream_publish_per_s", js_rate, "events/s", js_rate);
    let consume_rate = jetstream_consume_ack_per_s(n).await?;
    report(
        "raw_jetstream_consume_ack_per_s",
        consume_rate,
        "events/s",
        consume_rate,
    );
    let pg_rate = pg_batched_insert_per_s(n).await?;
    report("raw_pg_batched_insert_per_s", pg_rate, "rows/s", pg_rate);
    Ok(())
}

/// Events (JSON bodies with `Nats-Msg-Id`) published per second with a window of pipelined acks.
pub async fn jetstream_publish_per_s(n: usize) -> anyhow::Result<f64> {
    let nats = crate::harness::nats_server()?;
    let client = netqoe_nats::connect(&nats.url(), "netqoe-bench", true).await?;
    let js = async_nats::jetstream::new(client);
    netqoe_nats::provision(&js, netqoe_nats::Scope::Events, &Default::default()).await?;
    publish(&js, n).await
}

/// Messages pulled from the `aggregator` consumer and acked one by one per second, nothing
/// else done with them: the share of the aggregator's work that is NATS's.
pub async fn jetstream_consume_ack_per_s(n: usize) -> anyhow::Result<f64> {
    let nats = crate::harness::nats_server()?;
    let client = netqoe_nats::connect(&nats.url(), "netqoe-bench", true).await?;
    let js = async_nats::jetstream::new(client);
    netqoe_nats::provision(&js, netqoe_nats::Scope::All, &Default::default()).await?;
    publish(&js, n).await?;
    let consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(netqoe_nats::EVENTS_STREAM)
        .await?
        .get_consumer(netqoe_nats::AGGREGATOR_CONSUMER)
        .await
        .map_err(|e| anyhow::anyhow!("get consumer: {e}"))?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(2000)
        .heartbeat(std::time::Duration::from_secs(5))
        .expires(std::time::Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| anyhow::anyhow!("pull: {e}"))?;
    let nats_pid = nats.pid().context("nats-server is not running")?;
    let cpu_before = crate::harness::cpu_seconds(nats_pid)?;
    let start = Instant::now();
    for _ in 0..n {
        let msg = messages
            .next()
            .await
            .context("pull ended")?
            .map_err(|e| anyhow::anyhow!("receive: {e}"))?;
        msg.ack().await.map_err(|e| anyhow::anyhow!("ack: {e}"))?;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "[bench] raw_jetstream_consume_ack_per_s: CPU per event: nats-server {:.1} µs",
        (crate::harness::cpu_seconds(nats_pid)? - cpu_before) / n as f64 * 1e6
    );
    Ok(rate)
}

/// Publishes `n` sample events with a window of pipelined acks; returns events per second.
async fn publish(js: &async_nats::jetstream::Context, n: usize) -> anyhow::Result<f64> {
    let bodies: Vec<(String, bytes::Bytes)> = (0..n)
        .map(|i| {
            let id = uuid::Uuid::now_v7();
            let e = sample_event(
                id,
                &format!("client-{}", i % 2000),
                "https://bench.lab/",
                1_800_000_000_000,
                i as u64,
            );
            (
                id.to_string(),
                serde_json::to_vec(&e).expect("serialise").into(),
            )
        })
        .collect();
    let start = Instant::now();
    let mut inflight = FuturesUnordered::new();
    for (i, (id, body)) in bodies.into_iter().enumerate() {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let ack = js
            .publish_with_headers(
                netqoe_nats::event_subject(&format!("client-{}", i % 2000)),
                headers,
                body,
            )
            .await
            .context("publish")?;
        inflight.push(std::future::IntoFuture::into_future(ack));
        if inflight.len() >= PUBLISH_WINDOW {
            inflight
                .next()
                .await
                .expect("one in flight")
                .context("ack")?;
        }
    }
    while let Some(ack) = inflight.next().await {
        ack.context("ack")?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Event ids inserted per second into an indexed uuid table, 1 000 per UNNEST statement.
pub async fn pg_batched_insert_per_s(n: usize) -> anyhow::Result<f64> {
    let pg = crate::harness::pg_server()?;
    let url = pg.create_database("bench_raw").await?;
    let pool = netqoe_db::connect(&url, &Default::default()).await?;
    sqlx::query("CREATE TABLE raw_ids (event_id uuid PRIMARY KEY, client_id text NOT NULL, ts_ms bigint NOT NULL)")
        .execute(&pool)
        .await?;
    let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
    let start = Instant::now();
    for chunk in ids.chunks(1000) {
        let clients: Vec<String> = (0..chunk.len())
            .map(|i| format!("client-{}", i % 2000))
            .collect();
        let ts: Vec<i64> = vec![1_800_000_000_000; chunk.len()];
        sqlx::query("INSERT INTO raw_ids SELECT unnest($1::uuid[]), unnest($2::text[]), unnest($3::bigint[]) ON CONFLICT DO NOTHING")
            .bind(chunk)
            .bind(&clients)
            .bind(&ts)
            .execute(&pool)
            .await?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}
