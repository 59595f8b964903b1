//! Nobody writes where they may not, and nothing tells a secret: the released ingest and
//! aggregator with three tokens (two fleets and a metered one), logging at debug, and a
//! database URL with a password. Each check records its row of the security table in
//! docs/reliability.md under `target/reliability/security/`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use netqoe_e2e::faults::{self, Check, Stack};
use netqoe_test_support::{http_get, NatsServer};
use serde_json::{json, Value};

const FLEET_A: &str = "sec-fleet-a-7f3e9c2d1b5a4e60";
const FLEET_B: &str = "sec-fleet-b-4a8d6e0f2c9b1d73";
const METERED: &str = "sec-metered-91c3b5d7e8f0a2c4";
const WRONG: &str = "sec-wrong-token-0b1c2d3e4f5a6978";
const DB_PASSWORD: &str = "sec-db-password-5e6f7a8b";

/// The metered token's events per second and burst.
const RATE: f64 = 20.0;
const BURST: f64 = 40.0;

fn tokens() -> String {
    format!(
        "[[tokens]]\nname = \"fleet-a\"\ntoken = \"{FLEET_A}\"\nclients = [\"probe-a*\"]\nrate = 1000000\n\
         [[tokens]]\nname = \"fleet-b\"\ntoken = \"{FLEET_B}\"\nclients = [\"probe-b*\"]\nrate = 1000000\n\
         [[tokens]]\nname = \"metered\"\ntoken = \"{METERED}\"\nclients = [\"probe-m*\"]\nrate = {RATE}\nburst = {BURST}\n"
    )
}

fn event(client: &str) -> Value {
    let e = netqoe_loadgen::sample_event(
        uuid::Uuid::now_v7(),
        client,
        "https://t0.example/",
        netqoe_model::now_ms(),
        7,
    );
    serde_json::to_value(e).unwrap()
}

async fn post(http: &reqwest::Client, url: &str, token: &str, body: &Value) -> (u16, String) {
    let r = http.post(url).bearer_auth(token).json(body).send().await;
    let r = r.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// Distinct event ids of `ids` the aggregator merged.
async fn merged_of(s: &Stack, ids: &[String]) -> usize {
    let seen: Vec<String> = sqlx::query_scalar("SELECT event_id::text FROM events_seen")
        .fetch_all(&s.pool)
        .await
        .unwrap();
    let seen: HashSet<String> = seen.into_iter().collect();
    ids.iter().filter(|id| seen.contains(*id)).count()
}

fn ids_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_write_only_for_their_clients_at_their_rate_and_no_secret_leaks() {
    for key in [
        "1-cross-client",
        "2-rate-per-token",
        "3-no-secrets",
        "4-stream-bypass",
    ] {
        faults::forget_check(key);
    }
    let nats = NatsServer::start().unwrap();
    let log = "info,netqoe_ingest=debug,netqoe_aggregator=debug,netqoe_nats=debug,netqoe_db=debug,netqoe_common=debug";
    let env = [("RUST_LOG", log)];
    let mut s = Stack::start_with("security", &nats.url(), &tokens(), &env, &[])
        .await
        .unwrap();
    // Trust authentication ignores the password; it is there to be kept secret.
    s.db_url = s
        .db_url
        .replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
    assert!(s.db_url.contains(DB_PASSWORD), "{}", s.db_url);
    let (_agg, agg_metrics) = s.aggregator("aggregator", &[]).unwrap();
    let http = reqwest::Client::new();
    let url = s.ingest_url();

    // 1. Cross-client writes, alone and mixed into an otherwise allowed batch.
    let mut refused = Vec::new();
    let foreign = [event("probe-b1")];
    let mixed = [event("probe-a1"), event("probe-b2"), event("probe-a2")];
    for (token, body) in [
        (FLEET_A, json!(foreign[0])),
        (FLEET_A, json!(mixed)),
        (FLEET_B, json!([event("probe-a3")])),
        (METERED, json!(event("probe-a4"))),
    ] {
        refused.push(post(&http, &url, token, &body).await);
    }
    let allowed = [event("probe-a5"), event("probe-a6")];
    let (ok, _) = post(&http, &url, FLEET_A, &json!(allowed)).await;
    assert_eq!(ok, 202, "fleet-a writes for its own clients");
    for (status, body) in &refused {
        assert_eq!(*status, 403, "{body}");
        assert!(
            body.contains("client_id"),
            "the refusal names the field: {body}"
        );
    }
    // The allowed batch lands; nothing of a refused one does, not even its allowed part.
    let allowed_ids = ids_of(&allowed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while merged_of(&s, &allowed_ids).await < allowed_ids.len() {
        assert!(
            Instant::now() < deadline,
            "the allowed batch was not merged"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused_ids: Vec<String> = ids_of(&foreign).into_iter().chain(ids_of(&mixed)).collect();
    assert_eq!(
        merged_of(&s, &refused_ids).await,
        0,
        "a refused batch wrote nothing"
    );
    let stored_clients: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT client_id FROM agg_1m ORDER BY 1")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert_eq!(stored_clients, ["probe-a5", "probe-a6"]);
    Check::new(
        "tokens of one client cannot write for another",
        "fleet-a for a probe-b client; fleet-a with one probe-b event among two of its own; \
         fleet-b for probe-a; the metered token for probe-a",
        format!(
            "4 × 403 naming client_id, no event of those batches stored (agg_1m holds only \
             {stored_clients:?} of the allowed batch)"
        ),
    )
    .record("1-cross-client")
    .unwrap();

    // 2. The metered token's bucket holds under 20 connections at once.
    let start = Instant::now();
    let window = Duration::from_secs(3);
    let mut tasks = Vec::new();
    for c in 0..20 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            // One client, so one connection, per task.
            let http = reqwest::Client::new();
            let (mut accepted, mut limited, mut retry_after) = (0u32, 0u32, true);
            while start.elapsed() < window {
                let r = http
                    .post(&url)
                    .bearer_auth(METERED)
                    .json(&event(&format!("probe-m{c}")))
                    .send()
                    .await
                    .unwrap();
                match r.status().as_u16() {
                    202 => accepted += 1,
                    429 => {
                        limited += 1;
                        retry_after &= r.headers().contains_key("retry-after");
                    }
                    other => panic!("metered request answered {other}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (accepted, limited, retry_after)
        }));
    }
    // Meanwhile another token has a bucket of its own.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (other, _) = post(&http, &url, FLEET_B, &json!(event("probe-b9"))).await;
    let (mut accepted, mut limited) = (0u32, 0u32);
    for t in tasks {
        let (a, l, r) = t.await.unwrap();
        assert!(r, "every 429 carries Retry-After");
        accepted += a;
        limited += l;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let bound = BURST + RATE * elapsed;
    assert_eq!(
        other, 202,
        "fleet-b is not limited by the metered token's bucket"
    );
    assert!(
        accepted as f64 <= bound + 2.0,
        "{accepted} accepted, bound {bound:.0}"
    );
    assert!(
        accepted as f64 >= BURST,
        "{accepted} accepted, burst {BURST}"
    );
    assert!(limited > 0);
    Check::new(
        "rate limit per token under 20 concurrent connections",
        format!(
            "20 connections posting one event each every 20 ms for {elapsed:.1} s with one token \
             (rate {RATE}/s, burst {BURST}); another token meanwhile"
        ),
        format!(
            "{accepted} × 202 (bound: burst + rate × time = {bound:.0}), {limited} × 429 with \
             Retry-After; the other token answered {other}"
        ),
    )
    .record("2-rate-per-token")
    .unwrap();

    // 3. An unknown token, then every endpoint and log: no secret anywhere.
    let (status, body) = post(&http, &url, WRONG, &json!(event("probe-a7"))).await;
    assert_eq!(status, 401);
    let mut places = vec![("401 answer".to_string(), body)];
    for (who, addr) in [("ingest", s.ingest_metrics), ("aggregator", agg_metrics)] {
        for path in ["/metrics", "/healthz", "/readyz"] {
            let (code, text) = http_get(addr, path).unwrap();
            assert_eq!(code, 200, "{who} {path}");
            places.push((format!("{who} {path}"), text));
        }
    }
    for name in ["ingest", "aggregator"] {
        let log = s.log(name);
        assert!(log.lines().count() > 5, "{name} logged at debug");
        places.push((format!("{name} log"), log));
    }
    let secrets = [FLEET_A, FLEET_B, METERED, WRONG, DB_PASSWORD];
    for (place, text) in &places {
        for secret in secrets {
            assert!(!text.contains(secret), "{place} reveals {secret}");
        }
    }
    let names: Vec<&str> = places.iter().map(|(p, _)| p.as_str()).collect();
    Check::new(
        "no secret in logs, metrics, health or answers",
        format!(
            "three tokens, an unknown one and a database password searched in: {}",
            names.join(", ")
        ),
        "found nowhere",
    )
    .record("3-no-secrets")
    .unwrap();

    // 4. Messages published straight to the stream, around ingest's validation.
    let js = s.jetstream().await.unwrap();
    let stamped = |client: &str| {
        let mut e = event(client);
        e["recv_ts_ms"] = json!(netqoe_model::now_ms());
        e
    };
    let mut negative = stamped("probe-x2");
    negative["timings"]["dns_ms"] = json!(-5.0);
    let mut overflow = stamped("probe-x3");
    overflow["recv_ts_ms"] = json!(i64::MAX);
    let mut no_id = stamped("probe-x4");
    no_id.as_object_mut().unwrap().remove("event_id");
    let bypass: Vec<(&str, Vec<u8>)> = vec![
        ("probe-x1", b"not json at all".to_vec()),
        ("probe-x2", negative.to_string().into_bytes()),
        ("probe-x3", overflow.to_string().into_bytes()),
        ("probe-x4", no_id.to_string().into_bytes()),
    ];
    for (client, payload) in &bypass {
        js.publish(netqoe_nats::event_subject(client), payload.clone().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        let js = s.jetstream().await.unwrap();
        let letters = netqoe_aggregator::dlq::list(&js).await.unwrap_or_default();
        if letters.len() >= bypass.len() {
            break letters;
        }
        assert!(Instant::now() < deadline, "{} dead letters", letters.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reasons: Vec<String> = letters.iter().map(|l| l.reason.clone()).collect();
    assert_eq!(letters.len(), bypass.len(), "{reasons:?}");
    let bypass_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM agg_1m WHERE client_id LIKE 'probe-x%'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(bypass_rows, 0, "no invalid message reached agg_1m");
    let dlq = |reason: &str| {
        let label = format!("reason=\"{reason}\"");
        netqoe_e2e::scrape(
            agg_metrics,
            "netqoe_aggregator_dlq_messages_total",
            &[&label],
        )
        .unwrap()
    };
    let (undecodable, invalid) = (dlq("undecodable"), dlq("invalid"));
    assert_eq!(undecodable + invalid, bypass.len() as f64);
    Check::new(
        "messages published around ingest never reach agg_1m",
        "straight to QOE_EVENTS: not JSON, a negative dns_ms, recv_ts_ms = i64::MAX, no event_id",
        format!(
            "all {} in QOE_DLQ ({undecodable} undecodable, {invalid} invalid, each with its \
             reason), 0 rows in agg_1m",
            letters.len()
        ),
    )
    .record("4-stream-bypass")
    .unwrap();
}
