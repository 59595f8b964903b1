//! `run` on hand-made histories: steps on flat series, a sparse series, target and client
//! faults, idempotence and incremental runs.

use crate::support::{series, Db, Inc, MIN, T0};

type Brief = (String, String, Option<String>, Option<String>, i64, i64);

fn brief(incs: &[Inc]) -> Vec<Brief> {
    incs.iter()
        .map(|i| {
            (
                i.label.clone(),
                i.scope.clone(),
                i.client.clone(),
                i.target.clone(),
                i.start_min,
                i.end_min,
            )
        })
        .collect()
}

fn s(x: &str) -> Option<String> {
    Some(x.to_string())
}

#[tokio::test]
async fn steps_on_flat_series_raise_only_real_incidents() -> anyhow::Result<()> {
    let db = Db::start().await?;
    // Identical values for three hours, then: +0.5 ms everywhere (flat-a), +200 ms connect for
    // five minutes (flat-b), +200 ms first byte for five minutes (flat-c).
    let mut rows = series("c-a", "a.example:443", 0..240, 0.0, |m, w| {
        if m >= 180 {
            w.tcp += 0.5;
            w.ttfb += 0.5;
        }
    });
    rows.extend(series("c-b", "b.example:443", 0..240, 0.0, |m, w| {
        if (180..185).contains(&m) {
            w.tcp += 200.0;
        }
    }));
    rows.extend(series("c-c", "c.example:443", 0..240, 0.0, |m, w| {
        if (180..185).contains(&m) {
            w.ttfb += 200.0;
        }
    }));
    db.insert(&rows).await?;
    let out = db.run().await?;
    assert_eq!(out.windows, 720);
    let incs = db.incidents().await?;
    assert_eq!(
        brief(&incs),
        vec![
            (
                "connect".into(),
                "pair".into(),
                s("c-b"),
                s("b.example:443"),
                180,
                185
            ),
            (
                "server".into(),
                "pair".into(),
                s("c-c"),
                s("c.example:443"),
                180,
                185
            ),
        ]
    );
    assert!(incs.iter().all(|i| !i.open && i.windows == 5));
    assert_eq!(
        db.count("SELECT count(*) FROM diagnoses WHERE client_id = 'c-a'")
            .await?,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM diagnoses").await?, 10);
    let detail: String = sqlx::query_scalar(
        "SELECT detail FROM diagnoses WHERE client_id = 'c-b' ORDER BY window_start_ts LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await?;
    assert!(detail.starts_with("tcp connect p"), "{detail}");
    assert!(detail.contains("218 ms vs usual 18 ms"), "{detail}");
    assert_eq!(
        db.count("SELECT count(*) FROM agg_1m WHERE diagnosis_label = 'connect'")
            .await?,
        5
    );
    println!(
        "incidents: {:#?}",
        incs.iter().map(|i| &i.summary).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn a_sparse_series_with_a_slow_rise_makes_one_incident() -> anyhow::Result<()> {
    let db = Db::start().await?;
    // One window every 5 minutes for 16 hours, connect ~100 ms ±3 %; from hour 12 a 40-minute
    // rise of 30 %.
    let rows = series(
        "c-s",
        "s.example:443",
        (0..192).map(|i| i * 5),
        0.03,
        |m, w| {
            w.tcp *= 100.0 / 18.0;
            if (720..760).contains(&m) {
                w.tcp *= 1.3;
            }
        },
    );
    db.insert(&rows).await?;
    db.run().await?;
    let incs = db.incidents().await?;
    assert_eq!(
        brief(&incs),
        vec![(
            "connect".into(),
            "pair".into(),
            s("c-s"),
            s("s.example:443"),
            720,
            756
        )]
    );
    assert_eq!(incs[0].windows, 8);
    let interval: f64 = sqlx::query_scalar("SELECT interval_s FROM diagnoser_series")
        .fetch_one(&db.pool)
        .await?;
    assert_eq!(interval, 300.0);
    Ok(())
}

#[tokio::test]
async fn a_fault_shared_by_a_targets_clients_is_target_scoped() -> anyhow::Result<()> {
    let db = Db::start().await?;
    let mut rows = Vec::new();
    for c in 0..6 {
        let client = format!("c{c}");
        // Four of six clients of t.example see +300 ms connects for 10 minutes.
        rows.extend(series(&client, "t.example:443", 0..120, 0.05, |m, w| {
            if c < 4 && (90..100).contains(&m) {
                w.tcp += 300.0;
            }
        }));
        rows.extend(series(&client, "u.example:443", 0..120, 0.05, |_, _| {}));
    }
    db.insert(&rows).await?;
    db.run().await?;
    let incs = db.incidents().await?;
    assert_eq!(
        brief(&incs),
        vec![(
            "connect".into(),
            "target".into(),
            None,
            s("t.example:443"),
            90,
            100
        )]
    );
    assert!(
        incs[0]
            .summary
            .starts_with("Target t.example:443 (4 series affected)"),
        "{}",
        incs[0].summary
    );
    let detail: String = sqlx::query_scalar("SELECT detail FROM diagnoses LIMIT 1")
        .fetch_one(&db.pool)
        .await?;
    assert!(
        detail.contains("4 of 6 clients reporting this target"),
        "{detail}"
    );
    Ok(())
}

#[tokio::test]
async fn a_fault_on_all_of_a_clients_targets_is_client_scoped() -> anyhow::Result<()> {
    let db = Db::start().await?;
    let mut rows = Vec::new();
    for t in 0..4 {
        let target = format!("t{t}.example:443");
        for c in 0..4 {
            let client = format!("c{c}");
            // Client c0 resolves every name 300 ms slower for 10 minutes.
            rows.extend(series(&client, &target, 0..120, 0.05, |m, w| {
                if c == 0 && (90..100).contains(&m) {
                    w.dns += 300.0;
                }
            }));
        }
    }
    db.insert(&rows).await?;
    db.run().await?;
    let incs = db.incidents().await?;
    assert_eq!(
        brief(&incs),
        vec![("dns".into(), "client".into(), s("c0"), None, 90, 100)]
    );
    let detail: String = sqlx::query_scalar("SELECT detail FROM diagnoses LIMIT 1")
        .fetch_one(&db.pool)
        .await?;
    assert!(
        detail.contains("4 of 4 targets this client reported"),
        "{detail}"
    );
    Ok(())
}

/// Everything the diagnoser writes, as text, for before/after comparisons.
async fn snapshot(db: &Db) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for q in [
        "SELECT string_agg(format('%s %s %s %s %s %s %s', client_id, target, window_start_ts, label, scope, severity, detail), E'\\n' ORDER BY client_id, target, window_start_ts) FROM diagnoses",
        "SELECT string_agg(format('%s %s %s %s %s %s %s %s %s %s', id, label, scope, client_id, target, started_at, ended_at, open, windows, summary), E'\\n' ORDER BY id) FROM incidents",
        "SELECT string_agg(format('%s %s %s %s %s %s', client_id, target, metric, median, mad, n_windows), E'\\n' ORDER BY client_id, target, metric) FROM baselines",
        "SELECT string_agg(format('%s %s %s %s', client_id, target, md5(state), last_ts), E'\\n' ORDER BY client_id, target) FROM diagnoser_series",
        "SELECT string_agg(format('%s %s %s', client_id, window_start_ts, diagnosis_label), E'\\n' ORDER BY client_id, window_start_ts) FROM agg_1m WHERE diagnosis_label IS NOT NULL",
    ] {
        let s: Option<String> = sqlx::query_scalar(q).fetch_one(&db.pool).await?;
        out.push(s.unwrap_or_default());
    }
    Ok(out)
}

#[tokio::test]
async fn runs_are_idempotent_and_a_later_run_extends_an_open_incident() -> anyhow::Result<()> {
    let db = Db::start().await?;
    let shape = |m: i64, w: &mut crate::support::Win| {
        if (100..110).contains(&m) {
            w.tcp += 250.0;
        }
    };
    // First the history up to the middle of the fault.
    db.insert(&series("c1", "x.example:443", 0..104, 0.05, shape))
        .await?;
    let first = db.run().await?;
    assert_eq!(first.windows, 104);
    let before = db.incidents().await?;
    assert_eq!(before.len(), 1);
    assert!(before[0].open, "an incident at the end of the data is open");
    assert_eq!((before[0].start_min, before[0].end_min), (100, 104));

    // Running again with nothing new changes nothing.
    let snap = snapshot(&db).await?;
    let again = db.run().await?;
    assert_eq!(again.windows, 0);
    assert_eq!(snapshot(&db).await?, snap);

    // The rest of the fault and recovery arrive: the same incident grows and closes.
    db.insert(&series("c1", "x.example:443", 104..140, 0.05, shape))
        .await?;
    let third = db.run().await?;
    assert_eq!(third.windows, 36);
    let after = db.incidents().await?;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(
        (after[0].start_min, after[0].end_min, after[0].windows),
        (100, 110, 10)
    );
    assert!(!after[0].open);

    // Re-diagnosing the whole range replaces it with the same result.
    let snap = snapshot(&db).await?;
    let since = chrono::DateTime::from_timestamp_millis(T0)
        .unwrap()
        .to_rfc3339();
    let until = chrono::DateTime::from_timestamp_millis(T0 + 200 * MIN)
        .unwrap()
        .to_rfc3339();
    db.run_with(&["--since", &since, "--until", &until]).await?;
    let resnap = snapshot(&db).await?;
    assert_eq!(resnap[1], snap[1], "incidents unchanged");
    assert_eq!(resnap[0], snap[0], "diagnoses unchanged");
    Ok(())
}

#[tokio::test]
async fn late_events_within_the_lookback_are_judged_again() -> anyhow::Result<()> {
    let db = Db::start().await?;
    db.insert(&series("c1", "x.example:443", 0..140, 0.05, |_, _| {}))
        .await?;
    db.run().await?;
    assert!(db.incidents().await?.is_empty());

    // Late events land in the last four windows already judged: the aggregator rewrites them
    // and records the events in its ledger.
    sqlx::query(
        "UPDATE agg_1m SET tcp_p50 = tcp_p50 + 250, tcp_p95 = tcp_p95 + 250, \
           tls_p50 = tls_p50 + 250, tls_p95 = tls_p95 + 250, \
           total_p50 = total_p50 + 500, total_p95 = total_p95 + 500 \
         WHERE window_start_ts >= to_timestamp($1 / 1000.0)",
    )
    .bind(T0 + 136 * MIN)
    .execute(&db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO events_seen (event_id, client_id, ts_ms) \
         SELECT gen_random_uuid(), 'c1', $1 + m * 60000 + 17000 FROM generate_series(136, 139) m",
    )
    .bind(T0)
    .execute(&db.pool)
    .await?;
    let again = db.run().await?;
    assert_eq!(
        again.windows, 4,
        "only the rewritten windows are judged again"
    );
    let incs = db.incidents().await?;
    assert_eq!(incs.len(), 1, "{incs:?}");
    assert_eq!(
        (incs[0].label.as_str(), incs[0].start_min, incs[0].end_min),
        ("connect", 136, 140)
    );
    Ok(())
}
