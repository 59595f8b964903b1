//! The binary: `migrate`, `run` and `report` through the command line and environment.

use std::process::Command;

use crate::support::{series, Db};

fn diagnoser(db: &Db, args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_netqoe-diagnoser"))
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .output()?)
}

#[tokio::test]
async fn the_binary_runs_once_and_reports() -> anyhow::Result<()> {
    let db = Db::start().await?;
    let out = diagnoser(&db, &["migrate"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    db.insert(&series("c1", "x.example:443", 0..90, 0.05, |m, w| {
        if (60..70).contains(&m) {
            w.tcp += 250.0;
        }
    }))
    .await?;
    let out = diagnoser(&db, &["run"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.count("SELECT count(*) FROM incidents").await?, 1);
    // A configuration that cannot be used exits 3.
    let out = diagnoser(&db, &["run", "--min-windows", "1"])?;
    assert_eq!(out.status.code(), Some(3));
    Ok(())
}

#[tokio::test]
async fn report_html_is_one_self_contained_page_with_a_chart_per_incident() -> anyhow::Result<()> {
    let db = Db::start().await?;
    let mut rows = Vec::new();
    for c in 0..5 {
        let client = format!("edge-{c}");
        // Target fault: four of five clients of shop.example see slow connects.
        rows.extend(series(&client, "shop.example:443", 0..240, 0.06, |m, w| {
            if c < 4 && (150..175).contains(&m) {
                w.tcp += 180.0 + 20.0 * c as f64;
            }
        }));
        // Pair fault: one client's first byte from api.example.
        rows.extend(series(&client, "api.example:443", 0..240, 0.06, |m, w| {
            if c == 2 && (200..215).contains(&m) {
                w.ttfb += 350.0;
            }
        }));
    }
    db.insert(&rows).await?;
    let out = diagnoser(&db, &["run"])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let incidents = db.count("SELECT count(*) FROM incidents").await?;
    assert_eq!(incidents, 2);

    let dir = tempfile::tempdir()?;
    let path = std::env::var("NETQOE_DIAGNOSER_TEST_REPORT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("report.html"));
    let since = "2026-11-30T00:00:00Z";
    let out = diagnoser(
        &db,
        &[
            "report",
            "--since",
            since,
            "--format",
            "html",
            "--output",
            path.to_str().unwrap(),
        ],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&path)?;
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.matches("<section class=\"incident").count() == 2);
    let charts = html.matches("<svg").count();
    assert!(charts >= incidents as usize, "{charts} charts");
    for external in [
        "<script", "<link", "src=", "href=", "url(", "@import", "http://", "https://",
    ] {
        assert!(!html.contains(external), "page holds {external}");
    }
    assert!(html.contains("shop.example:443"));
    look_at(&path, incidents as usize)?;

    let out = diagnoser(&db, &["report", "--since", since])?;
    let table = String::from_utf8(out.stdout)?;
    assert!(
        table.contains("connect") && table.contains("target"),
        "{table}"
    );
    let out = diagnoser(
        &db,
        &[
            "report",
            "--since",
            since,
            "--format",
            "json",
            "--target",
            "api.example:443",
        ],
    )?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let incs = json["incidents"].as_array().unwrap();
    assert_eq!(incs.len(), 1);
    assert_eq!(incs[0]["label"], "server");
    assert_eq!(incs[0]["client_id"], "edge-2");
    Ok(())
}

#[tokio::test]
async fn evaluate_scores_incidents_against_the_truth_and_fails_below_thresholds(
) -> anyhow::Result<()> {
    use crate::support::{MIN, T0};
    let db = Db::start().await?;
    let mut rows = Vec::new();
    for c in 0..4 {
        let client = format!("edge-{c}");
        rows.extend(series(&client, "shop.example:443", 0..180, 0.05, |m, w| {
            if (120..140).contains(&m) {
                w.tcp += 200.0;
            }
        }));
    }
    // A real probe beside the scenario: its fault is in no truth file.
    rows.extend(series("edge-0", "lab.example:443", 0..180, 0.05, |m, w| {
        if (60..80).contains(&m) {
            w.ttfb += 500.0;
        }
    }));
    db.insert(&rows).await?;
    assert!(diagnoser(&db, &["run"])?.status.success());
    let injected = |label: &str, from: i64, to: i64| {
        serde_json::json!({"label": label, "scope": "target", "target": "shop.example:443",
            "start_ms": T0 + from * MIN, "end_ms": T0 + to * MIN})
    };
    let dir = tempfile::tempdir()?;
    let truth = dir.path().join("truth.json");
    std::fs::write(
        &truth,
        serde_json::to_string(&vec![injected("connect", 120, 140)])?,
    )?;
    let truth_arg = truth.to_str().unwrap();
    let out = diagnoser(&db, &["evaluate", "--truth", truth_arg, "--json"])?;
    assert_eq!(
        out.status.code(),
        Some(5),
        "the lab's incident counts as false"
    );
    let scores: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(scores["precision"], 0.5);
    let out = diagnoser(
        &db,
        &[
            "evaluate",
            "--truth",
            truth_arg,
            "--exclude-target",
            "lab.example:443",
        ],
    )?;
    let table = String::from_utf8(out.stdout)?;
    assert_eq!(out.status.code(), Some(0), "{table}");
    assert!(
        table.contains("found    injected connect target shop.example:443"),
        "{table}"
    );
    // A second injected incident nobody found: recall 0.5, exit 5.
    std::fs::write(
        &truth,
        serde_json::to_string(&vec![
            injected("connect", 120, 140),
            injected("tls", 150, 160),
        ])?,
    )?;
    let out = diagnoser(
        &db,
        &[
            "evaluate",
            "--truth",
            truth_arg,
            "--json",
            "--exclude-target",
            "lab.example:443",
        ],
    )?;
    assert_eq!(out.status.code(), Some(5));
    let scores: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(scores["recall"], 0.5);
    assert_eq!(scores["precision"], 1.0);
    assert_eq!(scores["false_anomalous_minutes"], 0);
    Ok(())
}

/// Opens the report in headless Chromium: the rendered page holds its charts, and its
/// screenshot is a drawn page, not a blank one. `NETQOE_DIAGNOSER_TEST_SCREENSHOT` keeps the
/// PNG for a person to look at.
fn look_at(page: &std::path::Path, incidents: usize) -> anyhow::Result<()> {
    use netqoe_test_support::browser;
    let dom = browser::rendered_dom(page)?;
    let charts = dom.matches("<svg").count();
    assert!(charts >= incidents, "{charts} charts rendered");
    assert!(dom.matches("<polyline").count() + dom.matches("<path").count() >= incidents);
    let dir = tempfile::tempdir()?;
    let png_path = std::env::var("NETQOE_DIAGNOSER_TEST_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("report.png"));
    browser::screenshot(page, &png_path, 1366, 1600)?;
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path)?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let background = pixels[0];
    let drawn = pixels.iter().filter(|p| **p != background).count();
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    assert!(
        drawn * 20 > pixels.len(),
        "only {drawn} of {} pixels differ from the background",
        pixels.len()
    );
    assert!(
        colours.len() > 50,
        "{} colours: a blank or flat page",
        colours.len()
    );
    Ok(())
}
