//! Every status of the events API produced by real requests, with bodies naming the problem.

use std::io::Write;

use serde_json::{json, Value};

use crate::support::{event, Ingest};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[tokio::test]
async fn accepts_objects_arrays_ndjson_and_gzip_after_the_ack() {
    let ingest = Ingest::start().await;
    let (status, body, _) = ingest
        .post(Some("token-a-0123456789"), &event("probe-a1"))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 1, "duplicates": 0, "warnings": []})
    );

    let batch: Vec<Value> = (0..5).map(|_| event("probe-a2")).collect();
    let (status, body, _) = ingest.post(Some("token-a-0123456789"), &json!(batch)).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(5)));

    let ndjson: String = (0..3).map(|_| format!("{}\n", event("probe-a3"))).collect();
    let resp = ingest
        .http
        .post(ingest.url("/events"))
        .bearer_auth("token-a-0123456789")
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gzip(ndjson.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<Value>().await.unwrap()["accepted"], 3);
    assert_eq!(ingest.stored().await, 9);

    // the stored message is the normalised event with recv_ts_ms set by ingest
    let mut e = event("probe-a4");
    e["recv_ts_ms"] = json!(1);
    e["error_stage"] = json!("TLS");
    e["colour"] = json!("blue");
    let (status, body, _) = ingest.post(Some("token-a-0123456789"), &e).await;
    assert_eq!(status, 202);
    assert_eq!(
        body["warnings"],
        json!(["event 0: unknown field `colour` ignored"])
    );
    let stream = ingest
        .js
        .get_stream(netqoe_nats::EVENTS_STREAM)
        .await
        .unwrap();
    let msg = stream
        .get_last_raw_message_by_subject("qoe.events.probe-a4")
        .await
        .unwrap();
    let stored: Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(stored["event_id"], e["event_id"]);
    assert_eq!(stored["error_stage"], "tls");
    assert!(stored.get("colour").is_none());
    assert!(stored["recv_ts_ms"].as_i64().unwrap() > 1_700_000_000_000);
    let headers = msg.headers;
    assert_eq!(
        headers.get("Nats-Msg-Id").unwrap().as_str(),
        e["event_id"].as_str().unwrap()
    );
    ingest.stop().await;
}

#[tokio::test]
async fn duplicates_are_stored_once_and_reported() {
    let ingest = Ingest::start().await;
    let e = event("probe-a1");
    let (s1, b1, _) = ingest.post(Some("token-a-0123456789"), &e).await;
    let (s2, b2, _) = ingest.post(Some("token-a-0123456789"), &e).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(b1, json!({"accepted": 1, "duplicates": 0, "warnings": []}));
    assert_eq!(b2, json!({"accepted": 0, "duplicates": 1, "warnings": []}));
    assert_eq!(ingest.stored().await, 1);
    ingest.stop().await;
}

#[tokio::test]
async fn auth_type_size_and_validation_errors_name_the_problem() {
    let ingest = Ingest::start().await;

    let (status, body, _) = ingest.post(None, &event("probe-a1")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("missing bearer token"));
    let (status, body, _) = ingest.post(Some("wrong"), &event("probe-a1")).await;
    assert_eq!(status, 401);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("unknown bearer token"));

    let resp = ingest
        .http
        .post(ingest.url("/api/v1/events"))
        .bearer_auth("token-a-0123456789")
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("text/plain"),
        "{body}"
    );
    let resp = ingest
        .http
        .post(ingest.url("/api/v1/events"))
        .bearer_auth("token-a-0123456789")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    let resp = ingest
        .http
        .post(ingest.url("/api/v1/events"))
        .bearer_auth("token-a-0123456789")
        .header("content-type", "application/json")
        .body("{\"schema_version\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_json");

    let mut bad = event("probe-a1");
    bad["timings"]["dns_ms"] = json!(-4);
    bad["http_status"] = json!(42);
    let good = event("probe-a1");
    let (status, body, _) = ingest
        .post(Some("token-a-0123456789"), &json!([good, bad]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_events");
    let details = body["details"].as_array().unwrap();
    assert!(details.iter().all(|d| d["index"] == 1));
    let fields: Vec<&str> = details
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["timings.dns_ms", "http_status"]);
    assert_eq!(
        ingest.stored().await,
        0,
        "nothing of a rejected request is published"
    );

    // 401 comes before 415, 415 before 413, 413 before 400
    let resp = ingest
        .http
        .post(ingest.url("/api/v1/events"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    ingest.stop().await;
}

#[tokio::test]
async fn a_token_cannot_submit_for_other_clients() {
    let ingest = Ingest::start().await;
    let batch = json!([event("probe-a1"), event("probe-b1")]);
    let (status, body, _) = ingest.post(Some("token-a-0123456789"), &batch).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "forbidden");
    assert_eq!(body["details"][0]["index"], 1);
    assert_eq!(body["details"][0]["field"], "client_id");
    assert!(body["details"][0]["problem"]
        .as_str()
        .unwrap()
        .contains("probe-b1"));
    assert_eq!(ingest.stored().await, 0);
    ingest.stop().await;
}

#[tokio::test]
async fn oversized_bodies_and_batches_get_413() {
    let ingest = Ingest::start().await;
    let big = vec![b' '; (1 << 20) + 1];
    let resp = ingest
        .http
        .post(ingest.url("/api/v1/events"))
        .bearer_auth("token-a-0123456789")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("1048576"),
        "{body}"
    );

    // 4 KiB of gzip that inflates to 8 MiB
    let bomb = gzip(&vec![b' '; 8 << 20]);
    assert!(bomb.len() < 64 << 10);
    let resp = ingest
        .http
        .post(ingest.url("/api/v1/events"))
        .bearer_auth("token-a-0123456789")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("decompressed"),
        "{body}"
    );

    let batch: Vec<Value> = (0..1001).map(|_| event("probe-a1")).collect();
    let (status, body, _) = ingest.post(Some("token-a-0123456789"), &json!(batch)).await;
    assert_eq!(status, 413);
    assert!(body["message"].as_str().unwrap().contains("1001"), "{body}");
    assert_eq!(ingest.stored().await, 0);
    ingest.stop().await;
}

#[tokio::test]
async fn rate_limits_count_events_and_say_when_to_retry() {
    let ingest = Ingest::start().await;
    let (status, _, _) = ingest
        .post(
            Some("token-slow-0123456789"),
            &json!([event("x1"), event("x1"), event("x1")]),
        )
        .await;
    assert_eq!(status, 202);
    let (status, body, headers) = ingest
        .post(Some("token-slow-0123456789"), &event("x1"))
        .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry-after {retry}");
    // other tokens have their own buckets
    let (status, _, _) = ingest
        .post(Some("token-any-0123456789"), &event("x1"))
        .await;
    assert_eq!(status, 202);
    assert_eq!(ingest.stored().await, 4);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_land_every_event_exactly_once() {
    let ingest = Ingest::start().await;
    let mut tasks = Vec::new();
    for c in 0..20 {
        let http = ingest.http.clone();
        let url = ingest.url("/api/v1/events");
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..10 {
                // mixes single events and batches of 9
                let n = if round % 2 == 0 { 1 } else { 9 };
                let events: Vec<Value> = (0..n).map(|_| event(&format!("probe-c{c}"))).collect();
                ids.extend(
                    events
                        .iter()
                        .map(|e| e["event_id"].as_str().unwrap().to_string()),
                );
                let body = if n == 1 {
                    events[0].clone()
                } else {
                    json!(events)
                };
                let resp = http
                    .post(&url)
                    .bearer_auth("token-any-0123456789")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
            }
            ids
        }));
    }
    let mut sent = std::collections::HashSet::new();
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    assert_eq!(sent.len(), 1000);
    assert_eq!(ingest.stored().await, 1000);
    ingest.stop().await;
}
