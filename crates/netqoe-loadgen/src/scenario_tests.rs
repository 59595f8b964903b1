//! Unit tests of the scenario generator: determinism, coverage of labels and scopes, the
//! placement rules, validity of the events, and that each fault shows where it should.

use std::collections::BTreeSet;

use netqoe_model::{ErrorStage, Event, Label, ProbeKind, Scope};

use super::*;

/// 2026-01-05T00:00Z, a fixed end so that runs compare.
const END: i64 = 1_767_571_200_000;

fn config(seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        seed,
        end_ms: END,
        ..ScenarioConfig::default()
    }
}

fn small(seed: u64) -> ScenarioConfig {
    ScenarioConfig {
        clients: 6,
        period: Duration::from_secs(6 * 3600),
        warmup: Duration::from_secs(3600),
        incidents: 7,
        ..config(seed)
    }
}

#[test]
fn the_same_seed_gives_the_same_events_and_truth() {
    let a = Scenario::new(small(7)).unwrap();
    let b = Scenario::new(small(7)).unwrap();
    assert_eq!(a.truth(), b.truth());
    for m in [0, 59, 200, a.minutes() - 1] {
        assert_eq!(a.minute(m), b.minute(m));
    }
    let c = Scenario::new(small(8)).unwrap();
    assert_ne!(a.truth(), c.truth());
    assert_ne!(a.minute(100), c.minute(100));
}

#[test]
fn default_scenario_covers_every_label_and_scope_within_the_rules() {
    for seed in [1, 2, 3, 42] {
        let s = Scenario::new(config(seed)).unwrap();
        let truth = s.truth();
        assert!(truth.len() >= 12, "{} incidents", truth.len());
        let labels: BTreeSet<Label> = truth.iter().map(|t| t.label).collect();
        let scopes: BTreeSet<Scope> = truth.iter().map(|t| t.scope).collect();
        assert_eq!(labels.len(), Label::ALL.len(), "seed {seed}: {labels:?}");
        assert_eq!(scopes.len(), Scope::ALL.len(), "seed {seed}: {scopes:?}");
        let (start, end) = s.period_ms();
        assert_eq!(end - start, 24 * 3600 * 1000);
        for t in &truth {
            let minutes = (t.end_ms - t.start_ms) / 60_000;
            assert!((10..=60).contains(&minutes), "{t:?}");
            assert_eq!(t.start_ms % 60_000, 0);
            assert!(
                t.start_ms >= start + 3 * 3600 * 1000 && t.end_ms <= end,
                "{t:?}"
            );
            assert_eq!(t.client_id.is_some(), t.scope != Scope::Target, "{t:?}");
            assert_eq!(t.target.is_some(), t.scope != Scope::Client, "{t:?}");
            let kind = if t.label == Label::Loss {
                ProbeKind::Ping
            } else {
                ProbeKind::Http
            };
            assert_eq!(t.probe_kind, kind);
        }
        // no two incidents of one label at once, and none sharing a series at once
        let placed = &s.incidents;
        for (i, a) in placed.iter().enumerate() {
            for b in &placed[i + 1..] {
                let overlap =
                    a.truth.start_ms < b.truth.end_ms && b.truth.start_ms < a.truth.end_ms;
                if overlap {
                    assert_ne!(a.truth.label, b.truth.label);
                    assert!(!faults_share(&a.series, &b.series));
                }
            }
        }
    }
}

fn faults_share(a: &[usize], b: &[usize]) -> bool {
    a.iter().any(|x| b.contains(x))
}

#[test]
fn scopes_reach_all_their_series() {
    let s = Scenario::new(config(5)).unwrap();
    for p in &s.incidents {
        let t = &p.truth;
        let expect: Vec<usize> = s
            .series
            .iter()
            .filter(|x| x.kind == t.probe_kind)
            .filter(|x| t.client_id.as_ref().is_none_or(|c| *c == x.client_id))
            .filter(|x| t.target.as_ref().is_none_or(|g| *g == x.target_str))
            .map(|x| x.index)
            .collect();
        assert_eq!(p.series, expect, "{t:?}");
        match t.scope {
            Scope::Target => assert!(expect.len() >= 3 * 4, "{t:?}"),
            Scope::Client => assert!(expect.len() >= 3, "{t:?}"),
            Scope::Pair => assert_eq!(expect.len(), 1),
        }
    }
    // a client measures every target over http and pings three of them
    let c0: Vec<&Series> = s.series.iter().filter(|x| x.client == 0).collect();
    assert_eq!(c0.iter().filter(|x| x.kind == ProbeKind::Http).count(), 6);
    assert_eq!(c0.iter().filter(|x| x.kind == ProbeKind::Ping).count(), 3);
}

#[test]
fn default_volume_and_cadences() {
    let s = Scenario::new(config(1)).unwrap();
    let sum = s.summary();
    assert_eq!(
        (sum.series_http, sum.series_http_sparse, sum.series_ping),
        (192, 48, 120)
    );
    // 192 series × 2880 + 48 × 288 + 120 × 1440
    assert_eq!(sum.events, 192 * 2880 + 48 * 288 + 120 * 1440);
    let total: u64 = (0..s.minutes()).map(|m| s.minute(m).len() as u64).sum();
    assert_eq!(total, sum.events);
}

#[test]
fn events_validate_and_fall_in_the_period_and_within_seven_days() {
    let s = Scenario::new(config(3)).unwrap();
    let (start, end) = s.period_ms();
    // validate as of the end of the period plus an hour of sending
    let now = end + 3600 * 1000;
    let mut ids = BTreeSet::new();
    for m in (0..s.minutes()).step_by(37) {
        let events = s.minute(m);
        assert!(!events.is_empty());
        for e in events {
            assert!(e.ts_ms >= start + m * 60_000 && e.ts_ms < start + (m + 1) * 60_000);
            assert!(e.ts_ms >= now - netqoe_model::MAX_PAST_MS && e.ts_ms < end);
            let v = serde_json::to_value(&e).unwrap();
            let checked =
                netqoe_model::validate_at(&v, now).unwrap_or_else(|errs| panic!("{v}: {errs:?}"));
            assert!(checked.warnings.is_empty());
            assert!(ids.insert(e.event_id), "unique ids");
        }
    }
    // the longest period is still ingestible an hour after its end
    let longest = Scenario::new(ScenarioConfig {
        period: MAX_PERIOD,
        ..config(3)
    })
    .unwrap();
    assert!(
        longest.period_ms().0 > longest.period_ms().1 + 3600 * 1000 - netqoe_model::MAX_PAST_MS - 1
    );
    assert!(Scenario::new(ScenarioConfig {
        period: Duration::from_secs(8 * 86400),
        ..config(3)
    })
    .is_err());
}

/// Median of the values `f` reads from the events of series `index` in [from, to).
fn median(
    s: &Scenario,
    index: usize,
    from: i64,
    to: i64,
    f: &dyn Fn(&Event) -> Option<f64>,
) -> f64 {
    let (start, _) = s.period_ms();
    let mut v: Vec<f64> = ((from - start) / 60_000..(to - start) / 60_000)
        .flat_map(|m| s.minute(m))
        .filter(|e| {
            e.target == s.series[index].target_str
                && e.client_id == s.series[index].client_id
                && e.probe_kind == s.series[index].kind
        })
        .filter_map(|e| f(&e))
        .collect();
    v.sort_by(f64::total_cmp);
    assert!(!v.is_empty());
    v[v.len() / 2]
}

#[test]
fn each_fault_moves_its_own_metric_well_beyond_the_noise() {
    for seed in 1..=3 {
        let s = Scenario::new(config(seed)).unwrap();
        for p in &s.incidents {
            let t = &p.truth;
            let i = p.series[0];
            let hour = 3_600_000;
            let before = |f: &dyn Fn(&Event) -> Option<f64>| {
                median(&s, i, t.start_ms - hour, t.start_ms - 20 * 60_000, f)
            };
            let during = |f: &dyn Fn(&Event) -> Option<f64>| median(&s, i, t.start_ms, t.end_ms, f);
            let timing = |g: fn(&netqoe_model::Timings) -> Option<f64>| {
                move |e: &Event| e.timings.as_ref().and_then(g)
            };
            let failed = |stage: ErrorStage| {
                move |e: &Event| Some(f64::from(u8::from(e.error_stage == Some(stage))))
            };
            let desc = &t.description;
            match p.fault {
                Fault::DnsSlow => assert!(
                    during(&timing(|t| t.dns_ms)) > before(&timing(|t| t.dns_ms)) + 200.0,
                    "{desc}"
                ),
                Fault::DnsFail => assert_eq!(during(&failed(ErrorStage::Dns)), 1.0, "{desc}"),
                Fault::ConnectSlow => assert!(
                    during(&timing(|t| t.tcp_ms)) > before(&timing(|t| t.tcp_ms)) + 150.0,
                    "{desc}"
                ),
                Fault::TlsSlow => assert!(
                    during(&timing(|t| t.tls_ms)) > before(&timing(|t| t.tls_ms)) + 150.0,
                    "{desc}"
                ),
                Fault::ServerSlow => assert!(
                    during(&timing(|t| t.http_ttfb_ms)) > 3.0 * before(&timing(|t| t.http_ttfb_ms)),
                    "{desc}"
                ),
                Fault::ThroughputLow => assert!(
                    during(&|e| e.throughput_kbps) < before(&|e| e.throughput_kbps) / 3.0,
                    "{desc}"
                ),
                Fault::HttpErrors => assert_eq!(during(&failed(ErrorStage::Http)), 1.0, "{desc}"),
                Fault::Loss => {
                    let loss = |e: &Event| {
                        e.ping.as_ref().map(|p| {
                            1.0 - f64::from(p.received.unwrap()) / f64::from(p.sent.unwrap())
                        })
                    };
                    assert_eq!(before(&loss), 0.0);
                    assert!(during(&loss) >= 0.3, "{desc}");
                }
            }
            // the stages a fault does not touch stay as they were
            if p.fault == Fault::ServerSlow || p.fault == Fault::ThroughputLow {
                let tcp = timing(|t| t.tcp_ms);
                assert!((during(&tcp) / before(&tcp) - 1.0).abs() < 0.3, "{desc}");
            }
        }
    }
}

#[test]
fn noise_has_rare_isolated_spikes_and_errors_outside_incidents() {
    let s = Scenario::new(config(11)).unwrap();
    let (mut errors, mut events) = (0u64, 0u64);
    for m in 0..s.minutes() {
        for e in s.minute(m) {
            events += 1;
            let inside = s.incidents.iter().any(|p| {
                (p.truth.start_ms..p.truth.end_ms).contains(&e.ts_ms)
                    && p.series.iter().any(|&i| {
                        s.series[i].client_id == e.client_id
                            && s.series[i].target_str == e.target
                            && s.series[i].kind == e.probe_kind
                    })
            });
            if !inside && e.error_stage.is_some() {
                errors += 1;
            }
        }
    }
    let rate = errors as f64 / events as f64;
    assert!(
        rate > 0.0 && rate < 5e-4,
        "{errors} isolated errors in {events}"
    );
    let spikes: u64 = s
        .series
        .iter()
        .map(|x| {
            (0..s.minutes())
                .filter(|&m| s.spike(x, m, s.start_ms + m * 60_000))
                .count() as u64
        })
        .sum();
    assert!(
        spikes > 0 && (spikes as f64) < 3e-4 * (s.series.len() as f64 * s.minutes() as f64),
        "{spikes} spikes"
    );
    for x in &s.series {
        for m in 1..s.minutes() {
            let start = s.start_ms;
            assert!(
                !(s.spike(x, m, start + m * 60_000) && s.spike(x, m - 1, start + (m - 1) * 60_000)),
                "spikes are isolated"
            );
        }
    }
}

#[test]
fn impossible_placements_and_shapes_are_refused() {
    let too_many = ScenarioConfig {
        incidents: 200,
        ..small(1)
    };
    assert!(matches!(
        Scenario::new(too_many),
        Err(ScenarioError::NoRoom { .. })
    ));
    assert!(Scenario::new(ScenarioConfig {
        clients: 2,
        ..small(1)
    })
    .is_err());
    assert!(Scenario::new(ScenarioConfig {
        warmup: Duration::from_secs(7 * 3600),
        ..small(1)
    })
    .is_err());
}
