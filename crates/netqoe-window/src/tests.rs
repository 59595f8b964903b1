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
    let unknown = WindowState::decode(&[9, 1, 2]).unwrap_err();
    assert!(
        matches!(unknown, StateError::UnknownFormat(9)),
        "{unknown:?}"
    );
    assert!(unknown.to_string().contains("version 9"), "{unknown}");
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

/// The exact serde content of a state (dense bins, extremes, sums, configuration), as JSON
/// (which writes every finite `f64` so that it reads back to the same bits).
fn content(w: &WindowState) -> Vec<u8> {
    serde_json::to_vec(w).unwrap()
}

/// Nine events with every timing and throughput, as a probe sends in a busy minute.
fn busy_minute() -> WindowState {
    let mut w = WindowState::default();
    for i in 0..9u64 {
        let jitter = (i * 7919 % 97) as f64;
        let mut e = event("c", 0, 5.0 + jitter / 10.0, None);
        e.timings = Some(Timings {
            dns_ms: Some(5.0 + jitter / 10.0),
            tcp_ms: Some(12.0 + jitter / 5.0),
            tls_ms: Some(25.0 + jitter / 3.0),
            http_ttfb_ms: Some(60.0 + jitter),
            total_ms: Some(110.0 + jitter * 1.5),
            ..Default::default()
        });
        e.throughput_kbps = Some(20_000.0 + jitter * 100.0);
        w.add(&e);
    }
    w
}

#[test]
fn format_3_is_written_and_other_formats_are_refused_by_number() {
    let [busy, one] = fixture_states();
    assert_eq!(one.encode()[0], 3, "format 3 is written");
    // Formats 1 and 2 (postcard, LZ4 of postcard) were never written by a release: a row
    // in them, or in any format but 3, is refused with its format byte named.
    for format in [0u8, 1, 2, 4, 0xff] {
        let mut row = busy.encode();
        row[0] = format;
        let err = WindowState::decode(&row).unwrap_err();
        assert!(
            matches!(err, StateError::UnknownFormat(f) if f == format),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            format!("unknown sketch_state format version {format}")
        );
    }
    for corrupt in [&[3u8, 0xff, 0xff][..], &[3, 0, 0, 0, 0, 0, 0, 0, 0, 2]] {
        let err = WindowState::decode(corrupt).unwrap_err();
        assert!(matches!(err, StateError::Corrupt(_)), "{err:?}");
        assert!(err.to_string().starts_with("corrupt sketch_state"), "{err}");
    }
}

#[test]
fn format_3_round_trips_every_state_exactly_and_rejects_every_truncation() {
    // Timings from a microsecond to a day fill every sketch to its bin limit (collapsed
    // bins); zero timings go to the zero count; the per-thread buffer reused by the next
    // encoding must not leak into it (the small states are encoded after the wide one).
    let events: Vec<_> = (0..4000)
        .map(|i| event("c", 0, 1e-3 * 1.0105f64.powi(i), None))
        .chain((0..3).map(|_| event("c", 0, 0.0, Some(ErrorStage::Dns))))
        .collect();
    let wide = group(&events).into_values().next().unwrap();
    let mut pinged = busy_minute();
    let mut e = event("c", 0, 1.0, None);
    e.ping = Some(PingStats {
        sent: Some(10),
        received: Some(9),
        jitter_ms: Some(0.75),
        ..Default::default()
    });
    pinged.add(&e);
    for state in [&wide, &busy_minute(), &pinged, &WindowState::default()] {
        let encoded = state.encode();
        assert_eq!(
            encoded.capacity(),
            encoded.len(),
            "no spare room kept in the cache"
        );
        let back = WindowState::decode(&encoded).unwrap();
        assert_eq!(content(&back), content(state));
        for cut in 1..encoded.len() {
            assert!(
                WindowState::decode(&encoded[..cut]).is_err(),
                "{cut} of {} bytes",
                encoded.len()
            );
        }
    }
    assert_eq!(
        WindowState::decode(&wide.encode()).unwrap().count_total,
        4003
    );
}

proptest! {
    #[test]
    fn format_3_round_trips_any_window(
        values in prop::collection::vec((0.0f64..1e6, prop::option::of(0.0f64..5e5)), 0..60),
    ) {
        let mut w = WindowState::default();
        for (i, (dns, kbps)) in values.iter().enumerate() {
            let mut e = event("c", i as i64, *dns, None);
            e.throughput_kbps = *kbps;
            w.add(&e);
        }
        let back = WindowState::decode(&w.encode()).unwrap();
        prop_assert_eq!(content(&back), content(&w));
    }
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

#[test]
fn format_3_is_tied_to_the_sketch_configuration() {
    // Rows in format 3 name the configuration by one byte: see SKETCH_ALPHA.
    assert_eq!(
        (SKETCH_ALPHA, SKETCH_MAX_BINS, SKETCH_MIN_VALUE),
        (0.005, 4096, 1e-6),
        "a new sketch configuration needs a new sketch_state format version"
    );
    // An unused sketch is one byte, so a state of nothing but counters is a few bytes.
    assert!(WindowState::default().encode().len() < 20);
}

/// Format 3 bytes of [`busy_minute`] and of a one-event window as this format was first
/// released: rows already stored must read back, and a writer change must not move a byte.
const FORMAT_3_FIXTURE: &str = include_str!("format3_fixture.hex");

fn fixture_states() -> [WindowState; 2] {
    let one = group(&[event("c", 0, 12.5, None)])
        .into_values()
        .next()
        .unwrap();
    [busy_minute(), one]
}

#[test]
fn format_3_writes_the_released_bytes() {
    let expected: Vec<&str> = FORMAT_3_FIXTURE.lines().collect();
    let states = fixture_states();
    assert_eq!(expected.len(), states.len());
    for (state, hex) in states.iter().zip(expected) {
        assert_eq!(hex::encode(state.encode()), hex);
        let back = WindowState::decode(&hex::decode(hex).unwrap()).unwrap();
        assert_eq!(content(&back), content(state));
    }
}
