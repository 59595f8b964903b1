//! Unit tests of window state: adding, merging, encoding, percentile accuracy.

use netqoe_model::{ErrorStage, Event, PingStats, Timings};
use proptest::prelude::*;

use super::*;

fn event(client: &str, ts: i64, dns: f64, stage: Option<ErrorStage>) -> Event {
    let mut e = Event::new(uuid::Uuid::new_v4(), client, ts, "https://t.example/");
    e.timings = Some(Timings {
        dns_ms: Some(dns),
        total_ms: Some(dns * 3.0),
        ..Default::default()
    });
    e.error_stage = stage;
    e.recv_ts_ms = Some(ts + 10);
    e
}

/// Exact percentile with the sketch's rank definition, floor(q * (n - 1)).
fn exact(sorted: &[f64], q: f64) -> f64 {
    sorted[(q * (sorted.len() as f64 - 1.0)) as usize]
}

#[test]
fn counts_errors_by_stage_and_keeps_timings_of_failures() {
    let events = [
        event("c", 60_000, 10.0, None),
        event("c", 60_001, 20.0, Some(ErrorStage::Tls)),
        event("c", 119_999, 30.0, Some(ErrorStage::Timeout)),
    ];
    let groups = group(&events);
    assert_eq!(groups.len(), 1);
    let (key, w) = groups.into_iter().next().unwrap();
    assert_eq!(key.window_start_ms, 60_000);
    assert_eq!((w.count_total, w.count_success, w.count_error()), (3, 1, 2));
    assert_eq!(w.errors_of(ErrorStage::Tls), 1);
    assert_eq!(w.errors_of(ErrorStage::Timeout), 1);
    assert_eq!(
        summarise(&w.timings[0]).count,
        3,
        "the DNS time of failed events counts"
    );
    assert_eq!(
        summarise(&w.timings[2]),
        Summary::default(),
        "no TLS samples: all NULL"
    );
    assert_eq!(w.last_recv_ms, Some(120_009));
}

#[test]
fn windows_split_by_client_target_and_minute() {
    let events = [
        event("a", 0, 1.0, None),
        event("a", 60_000, 1.0, None),
        event("b", 0, 1.0, None),
    ];
    let keys: Vec<_> = group(&events)
        .into_keys()
        .map(|k| (k.client_id, k.window_start_ms))
        .collect();
    assert_eq!(
        keys,
        vec![("a".into(), 0), ("a".into(), 60_000), ("b".into(), 0)]
    );
}

#[test]
fn ping_and_throughput_are_summarised() {
    let mut e = event("c", 0, 1.0, None);
    e.throughput_kbps = Some(8000.0);
    e.ping = Some(PingStats {
        sent: Some(5),
        received: Some(4),
        jitter_ms: Some(2.5),
        ..Default::default()
    });
    let w = group(&[e]).into_values().next().unwrap();
    assert_eq!((w.ping_sent, w.ping_received), (5, 4));
    let t = summarise(&w.throughput).p50.unwrap();
    assert!((t - 8000.0).abs() / 8000.0 < 0.01);
    assert!((summarise(&w.jitter).p50.unwrap() - 2.5).abs() < 0.03);
}

#[test]
fn encoding_round_trips_and_empty_bytes_are_empty_state() {
    let events: Vec<_> = (0..500)
        .map(|i| event("c", 0, 1.0 + i as f64, None))
        .collect();
    let w = group(&events).into_values().next().unwrap();
    let bytes = w.encode();
    assert!(
        bytes.len() < 8 * 1024,
        "state stays compact: {} bytes",
        bytes.len()
    );
    let back = WindowState::decode(&bytes).unwrap();
    assert_eq!(summarise(&back.timings[0]), summarise(&w.timings[0]));
    assert_eq!(back.count_total, 500);
    assert_eq!(WindowState::decode(&[]).unwrap().count_total, 0);
    assert!(WindowState::decode(&[9, 1, 2])
        .unwrap_err()
        .contains("version 9"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn merging_any_split_equals_adding_everything(
        values in prop::collection::vec(0.01f64..600_000.0, 1..400),
        split in 0usize..400,
    ) {
        let events: Vec<_> = values.iter().map(|v| event("c", 0, *v, None)).collect();
        let split = split.min(events.len());
        let all = group(&events).into_values().next().unwrap();
        let mut left = group(&events[..split]).into_values().next().unwrap_or_default();
        let right = group(&events[split..]).into_values().next().unwrap_or_default();
        left.merge(&right);
        prop_assert_eq!(left.count_total, all.count_total);
        prop_assert_eq!(summarise(&left.timings[0]), summarise(&all.timings[0]));
        prop_assert_eq!(summarise(&left.timings[4]), summarise(&all.timings[4]));
    }

    #[test]
    fn percentiles_are_within_one_percent_of_exact(
        values in prop::collection::vec(0.05f64..600_000.0, 1..2000),
    ) {
        let events: Vec<_> = values.iter().map(|v| event("c", 0, *v, None)).collect();
        let w = group(&events).into_values().next().unwrap();
        let s = summarise(&w.timings[0]);
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for (q, got) in [(0.5, s.p50), (0.95, s.p95), (0.99, s.p99)] {
            let want = exact(&sorted, q);
            let got = got.unwrap();
            prop_assert!((got - want).abs() <= want * 0.01, "q{}: got {} want {}", q, got, want);
        }
        prop_assert_eq!(s.min, Some(sorted[0]));
        prop_assert_eq!(s.max, Some(*sorted.last().unwrap()));
    }
}

#[test]
fn compressed_state_is_small_and_plain_postcard_rows_still_read() {
    let one = group(&[event("c", 0, 12.5, None)])
        .into_values()
        .next()
        .unwrap();
    let plain = postcard::to_allocvec(&one).unwrap();
    let compressed = one.encode();
    assert!(
        compressed.len() * 3 < plain.len() + 1,
        "a one-event window compresses: {} bytes vs {} plain",
        compressed.len(),
        plain.len() + 1
    );
    // a row written in format 1 (plain postcard) decodes to the same state
    let mut v1 = vec![1u8];
    v1.extend(&plain);
    let back = WindowState::decode(&v1).unwrap();
    assert_eq!(summarise(&back.timings[0]), summarise(&one.timings[0]));
    assert!(WindowState::decode(&[2, 0xff, 0xff])
        .unwrap_err()
        .starts_with("corrupt sketch_state"));
}

#[test]
fn format_2_is_the_lz4_size_prepended_block_of_postcard_even_for_wide_states() {
    // Timings from a microsecond to a day fill every sketch to its bin limit: the plain
    // encoding is many kilobytes, and the buffers reused by the next encoding must not leak
    // into it (the one-event state is encoded after the wide one).
    let events: Vec<_> = (0..4000)
        .map(|i| event("c", 0, 1e-3 * 1.0105f64.powi(i), None))
        .collect();
    let wide = group(&events).into_values().next().unwrap();
    let one = group(&[event("c", 0, 12.5, None)])
        .into_values()
        .next()
        .unwrap();
    for state in [&wide, &one, &one] {
        let plain = postcard::to_allocvec(state).unwrap();
        let mut expected = vec![2u8];
        expected.extend(lz4_flex::compress_prepend_size(&plain));
        let encoded = state.encode();
        assert_eq!(encoded, expected);
        assert_eq!(
            encoded.capacity(),
            encoded.len(),
            "no spare room kept in the cache"
        );
    }
    assert!(postcard::to_allocvec(&wide).unwrap().len() > 4 * 1024);
    let back = WindowState::decode(&wide.encode()).unwrap();
    assert_eq!(summarise(&back.timings[0]), summarise(&wide.timings[0]));
    assert_eq!(back.count_total, 4000);
}

#[test]
fn percentiles_sharing_a_rank_equal_the_sketch_answer() {
    // Every sample count from empty to well past the point where p95 and p99 part.
    let mut w = WindowState::default();
    for n in 0..300u32 {
        let s = &w.timings[0];
        let direct = |q: f64| s.quantile(q).unwrap();
        let got = summarise(s);
        assert_eq!(got.count, u64::from(n));
        assert_eq!(
            (got.p05, got.p50, got.p95, got.p99),
            (direct(0.05), direct(0.50), direct(0.95), direct(0.99)),
            "{n} samples"
        );
        // Spread over two decades, in an order that is not sorted.
        let v = 1.0 + f64::from((n * 37) % 300) / 3.0;
        w.add(&event("c", 0, v, None));
    }
}

#[test]
fn only_the_wanted_percentiles_are_computed() {
    let events: Vec<_> = (1..=100).map(|i| event("c", 0, i as f64, None)).collect();
    let w = group(&events).into_values().next().unwrap();
    let all = summarise(&w.timings[0]);
    let timing = summarise_some(&w.timings[0], Wanted::TIMING);
    assert_eq!(timing.p05, None);
    assert_eq!(
        (timing.p50, timing.p95, timing.p99),
        (all.p50, all.p95, all.p99)
    );
    assert_eq!(
        (timing.count, timing.min, timing.max),
        (100, Some(1.0), Some(100.0))
    );
    let tput = summarise_some(&w.timings[0], Wanted::THROUGHPUT);
    assert_eq!(
        (tput.p05, tput.p50, tput.p95, tput.p99),
        (all.p05, all.p50, all.p95, None)
    );
    let median = summarise_some(&w.timings[0], Wanted::MEDIAN);
    assert_eq!(
        (median.p05, median.p50, median.p95, median.p99),
        (None, all.p50, None, None)
    );
}
