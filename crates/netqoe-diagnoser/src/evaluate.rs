//! `netqoe-diagnoser evaluate --truth FILE`: scores the stored incidents against the incidents a
//! scenario injected. A found incident matches an injected one with the same label, scope and
//! entity (client and/or target) whose time overlaps it. Precision: share of found incidents
//! that match; recall: share of injected incidents matched; localisation: among injected
//! incidents found with the right label on their client or target at all, the share found with
//! the right scope and entity; false anomalous minutes: anomalous windows outside every
//! injected incident's series and time (±2 min) per 1000 windows there.

use std::fmt::Write as _;

use netqoe_model::{InjectedIncident, Label, Scope};
use serde::Serialize;
use sqlx::PgPool;

use crate::config::EvaluateArgs;
use crate::report::iso;
use crate::store::evaluate as q;
use crate::Error;

/// Slack around an injected incident within which anomalous windows are not false.
const SLACK_MS: i64 = 120_000;

/// A stored incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub id: i64,
    pub label: Label,
    pub scope: Scope,
    pub client_id: Option<String>,
    pub target: Option<String>,
    pub start_ms: i64,
    pub end_ms: i64,
}

fn overlaps(t: &InjectedIncident, f: &Found) -> bool {
    f.start_ms < t.end_ms && t.start_ms < f.end_ms
}

fn exact(t: &InjectedIncident, f: &Found) -> bool {
    t.label == f.label
        && t.scope == f.scope
        && t.client_id == f.client_id
        && t.target == f.target
        && overlaps(t, f)
}

/// Same label, overlapping, on the injected incident's client or target in any scope.
fn near(t: &InjectedIncident, f: &Found) -> bool {
    let on_client = t.client_id.is_some() && t.client_id == f.client_id;
    let on_target = t.target.is_some() && t.target == f.target;
    t.label == f.label && overlaps(t, f) && (on_client || on_target)
}

/// The scores.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scores {
    pub injected: usize,
    pub found: usize,
    pub precision: f64,
    pub recall: f64,
    pub localisation: f64,
    pub false_anomalous_minutes: i64,
    pub healthy_series_minutes: i64,
    pub false_per_1000: f64,
    /// One line per injected incident and per unmatched found incident.
    pub lines: Vec<String>,
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn describe(
    label: Label,
    scope: Scope,
    client: &Option<String>,
    target: &Option<String>,
) -> String {
    let who = match (client, target) {
        (Some(c), Some(t)) => format!("{c} → {t}"),
        (Some(c), None) => c.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => "?".into(),
    };
    format!("{} {} {who}", label.as_str(), scope.as_str())
}

/// Precision, recall and localisation of `found` against `truth` (pure).
pub fn score(
    truth: &[InjectedIncident],
    found: &[Found],
    false_minutes: i64,
    healthy_minutes: i64,
) -> Scores {
    let mut lines = Vec::new();
    let mut recalled = 0;
    let mut detected = 0;
    for t in truth {
        let what = format!(
            "injected {} {} – {}",
            describe(t.label, t.scope, &t.client_id, &t.target),
            iso(t.start_ms),
            iso(t.end_ms)
        );
        if let Some(f) = found.iter().find(|f| exact(t, f)) {
            recalled += 1;
            detected += 1;
            lines.push(format!("found    {what}: incident #{}", f.id));
        } else if let Some(f) = found.iter().find(|f| near(t, f)) {
            detected += 1;
            lines.push(format!(
                "misplaced {what}: incident #{} is {}",
                f.id,
                describe(f.label, f.scope, &f.client_id, &f.target)
            ));
        } else {
            lines.push(format!("missed   {what}"));
        }
    }
    let mut precise = 0;
    for f in found {
        if truth.iter().any(|t| exact(t, f)) {
            precise += 1;
        } else {
            lines.push(format!(
                "false    incident #{} {} {} – {}",
                f.id,
                describe(f.label, f.scope, &f.client_id, &f.target),
                iso(f.start_ms),
                iso(f.end_ms)
            ));
        }
    }
    Scores {
        injected: truth.len(),
        found: found.len(),
        precision: ratio(precise, found.len()),
        recall: ratio(recalled, truth.len()),
        localisation: ratio(recalled, detected),
        false_anomalous_minutes: false_minutes,
        healthy_series_minutes: healthy_minutes,
        false_per_1000: if healthy_minutes == 0 {
            0.0
        } else {
            false_minutes as f64 * 1000.0 / healthy_minutes as f64
        },
        lines,
    }
}

/// Whether every score meets its threshold.
pub fn passes(s: &Scores, a: &EvaluateArgs) -> bool {
    s.precision >= a.min_precision
        && s.recall >= a.min_recall
        && s.localisation >= a.min_localisation
        && s.false_per_1000 <= a.max_false_per_1000
}

/// The table `evaluate` prints.
pub fn table(s: &Scores, a: &EvaluateArgs) -> String {
    let mut out = String::new();
    for l in &s.lines {
        let _ = writeln!(out, "{l}");
    }
    let _ = writeln!(
        out,
        "\n{:<44} {:>10} {:>12}  result",
        "score", "value", "threshold"
    );
    let row = |out: &mut String, name: &str, v: f64, th: String, ok: bool| {
        let _ = writeln!(
            out,
            "{name:<44} {v:>10.3} {th:>12}  {}",
            if ok { "ok" } else { "BELOW" }
        );
    };
    row(
        &mut out,
        &format!("precision ({} incidents found)", s.found),
        s.precision,
        format!("≥ {}", a.min_precision),
        s.precision >= a.min_precision,
    );
    row(
        &mut out,
        &format!("recall ({} incidents injected)", s.injected),
        s.recall,
        format!("≥ {}", a.min_recall),
        s.recall >= a.min_recall,
    );
    row(
        &mut out,
        "localisation",
        s.localisation,
        format!("≥ {}", a.min_localisation),
        s.localisation >= a.min_localisation,
    );
    row(
        &mut out,
        &format!(
            "false anomalous min per 1000 ({} of {})",
            s.false_anomalous_minutes, s.healthy_series_minutes
        ),
        s.false_per_1000,
        format!("≤ {}", a.max_false_per_1000),
        s.false_per_1000 <= a.max_false_per_1000,
    );
    out
}

/// Reads the truth and the stored incidents, prints the scores; true when all pass.
pub async fn run(pool: &PgPool, args: &EvaluateArgs) -> Result<bool, Error> {
    let text = std::fs::read_to_string(&args.truth)?;
    let truth: Vec<InjectedIncident> = serde_json::from_str(&text)
        .map_err(|e| Error::Input(format!("{}: {e}", args.truth.display())))?;
    let excluded =
        |t: &Option<String>| t.as_ref().is_some_and(|t| args.exclude_targets.contains(t));
    let found: Vec<Found> = q::incidents(pool)
        .await?
        .into_iter()
        .filter(|f| !excluded(&f.target))
        .collect();
    let (false_minutes, healthy) =
        q::outside_truth(pool, &truth, SLACK_MS, &args.exclude_targets).await?;
    let scores = score(&truth, &found, false_minutes, healthy);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&scores).map_err(|e| Error::Input(e.to_string()))?
        );
    } else {
        print!("{}", table(&scores, args));
    }
    Ok(passes(&scores, args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netqoe_model::ProbeKind;

    const MIN: i64 = 60_000;

    fn truth(
        label: Label,
        scope: Scope,
        c: Option<&str>,
        t: Option<&str>,
        from: i64,
        to: i64,
    ) -> InjectedIncident {
        InjectedIncident {
            label,
            scope,
            client_id: c.map(Into::into),
            target: t.map(Into::into),
            probe_kind: ProbeKind::Http,
            start_ms: from * MIN,
            end_ms: to * MIN,
            description: String::new(),
        }
    }

    fn found(
        id: i64,
        label: Label,
        scope: Scope,
        c: Option<&str>,
        t: Option<&str>,
        from: i64,
        to: i64,
    ) -> Found {
        Found {
            id,
            label,
            scope,
            client_id: c.map(Into::into),
            target: t.map(Into::into),
            start_ms: from * MIN,
            end_ms: to * MIN,
        }
    }

    #[test]
    fn scores_count_matches_misplacements_and_false_incidents() {
        use Label::*;
        use Scope::*;
        let t = vec![
            truth(Connect, Target, None, Some("T"), 100, 130),
            truth(Dns, Client, Some("c1"), None, 200, 220),
            truth(Server, Pair, Some("c2"), Some("U"), 300, 310),
            truth(Tls, Target, None, Some("V"), 400, 410),
        ];
        let f = vec![
            found(1, Connect, Target, None, Some("T"), 101, 129),
            // Right label on the client, but blamed on one target: found, misplaced.
            found(2, Dns, Pair, Some("c1"), Some("T"), 201, 219),
            found(3, Server, Pair, Some("c2"), Some("U"), 302, 312),
            // Nothing injected there.
            found(4, Errors, Pair, Some("c3"), Some("T"), 500, 505),
        ];
        let s = score(&t, &f, 5, 10_000);
        assert_eq!(s.precision, 0.5);
        assert_eq!(s.recall, 0.5);
        assert!((s.localisation - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.false_per_1000, 0.5);
        assert!(s
            .lines
            .iter()
            .any(|l| l.starts_with("missed") && l.contains("tls target V")));
        assert!(s
            .lines
            .iter()
            .any(|l| l.starts_with("misplaced") && l.contains("#2")));
        assert!(s
            .lines
            .iter()
            .any(|l| l.starts_with("false") && l.contains("#4")));
        // No truth and nothing found scores perfectly.
        let s = score(&[], &[], 0, 0);
        assert_eq!(
            (s.precision, s.recall, s.localisation, s.false_per_1000),
            (1.0, 1.0, 1.0, 0.0)
        );
    }
}
