//! The label of an anomalous window: the stage that explains its anomalous metrics, and the
//! sentence that says why (pure, no IO).
//!
//! Stages are blamed in the order a measurement goes through them: a slow or failing DNS
//! lookup first, then loss on the path (ping), TCP connect, TLS handshake, the server's first
//! byte, HTTP errors, throughput. A slow connect also makes TLS, first byte and total slow:
//! the earliest anomalous stage explains the later ones. Total time alone (no phase anomalous)
//! is blamed on the server.

use netqoe_model::{Label, Severity};

use crate::score::Finding;
use crate::series::{Kind, Metric};

/// Blame order of the labels.
pub const ORDER: [Label; 7] = [
    Label::Dns,
    Label::Loss,
    Label::Connect,
    Label::Tls,
    Label::Server,
    Label::Errors,
    Label::Throughput,
];

/// What a window is diagnosed with.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub label: Label,
    /// The finding that carries the label (most severe, then highest score).
    pub main: Finding,
    /// Other labels whose metrics were anomalous too (explained by `label`).
    pub also: Vec<Label>,
}

impl Verdict {
    pub fn severity(&self) -> Severity {
        self.main.severity
    }
}

fn is_total(m: Metric) -> bool {
    matches!(m, Metric::TotalP50 | Metric::TotalP95)
}

/// Picks the explaining stage among a window's findings; None when there are none.
pub fn label(findings: &[Finding]) -> Option<Verdict> {
    let phase: Vec<&Finding> = findings.iter().filter(|f| !is_total(f.metric)).collect();
    let pool: Vec<&Finding> = if phase.is_empty() {
        findings.iter().collect()
    } else {
        phase
    };
    let label = ORDER
        .into_iter()
        .find(|l| pool.iter().any(|f| f.metric.label() == *l))?;
    let main = pool
        .iter()
        .filter(|f| f.metric.label() == label)
        .max_by(|a, b| {
            a.severity
                .cmp(&b.severity)
                .then(a.score.total_cmp(&b.score))
        })
        .map(|f| (*f).clone())?;
    // Total time is not a stage of its own: it only says something when no phase does.
    let mut also: Vec<Label> = pool
        .iter()
        .map(|f| f.metric.label())
        .filter(|l| *l != label)
        .collect();
    also.sort();
    also.dedup();
    Some(Verdict { label, main, also })
}

/// A value in its metric's unit: `412 ms`, `2.4 Mbit/s`, `35 %`.
pub fn format_value(m: Metric, v: f64) -> String {
    match m.kind() {
        Kind::Latency => {
            if v >= 10.0 {
                format!("{v:.0} ms")
            } else {
                format!("{v:.1} ms")
            }
        }
        Kind::Throughput => {
            if v >= 1000.0 {
                format!("{:.1} Mbit/s", v / 1000.0)
            } else {
                format!("{v:.0} kbit/s")
            }
        }
        Kind::Rate => {
            let pct = v * 100.0;
            if pct >= 1.0 || pct == 0.0 {
                format!("{pct:.0} %")
            } else {
                format!("{pct:.1} %")
            }
        }
    }
}

/// "tcp connect p95 412 ms vs usual 18 ms (±6)"; for rates, "tcp connect failures 45 % of 20
/// tries vs usual 0.1 %".
pub fn detail(f: &Finding) -> String {
    match f.metric.kind() {
        Kind::Rate => {
            let what = if f.metric == Metric::PingLoss {
                "packets"
            } else {
                "tries"
            };
            format!(
                "{} {} of {:.0} {what} vs usual {}",
                f.metric.words(),
                format_value(f.metric, f.observed),
                f.trials,
                format_value(f.metric, f.baseline)
            )
        }
        _ => {
            let spread = match f.metric.kind() {
                Kind::Throughput if f.spread >= 1000.0 => format!("{:.1}", f.spread / 1000.0),
                _ if f.spread >= 1.0 => format!("{:.0}", f.spread),
                _ => format!("{:.1}", f.spread),
            };
            format!(
                "{} {} vs usual {} (±{spread})",
                f.metric.words(),
                format_value(f.metric, f.observed),
                format_value(f.metric, f.baseline)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(metric: Metric, severity: Severity, score: f64) -> Finding {
        Finding {
            metric,
            observed: 412.0,
            baseline: 18.0,
            spread: 6.0,
            score,
            severity,
            trials: 0.0,
        }
    }

    #[test]
    fn the_earliest_stage_explains_the_later_ones() {
        use Metric::*;
        use Severity::*;
        // (anomalous metrics, expected label)
        let cases: &[(&[Metric], Label)] = &[
            (&[TcpP95, TlsP95, TtfbP95, TotalP95], Label::Connect),
            (&[DnsP50, TcpP50, TotalP50], Label::Dns),
            (&[TlsP95, TotalP95], Label::Tls),
            (&[TtfbP50, TotalP50], Label::Server),
            (&[TotalP95], Label::Server),
            (&[ThroughputP50, TotalP95], Label::Throughput),
            (&[ErrorRate], Label::Errors),
            (&[TtfbP95, ErrorRate], Label::Server),
            (&[ConnectFailures], Label::Connect),
            (&[DnsFailures, ErrorRate], Label::Dns),
            (&[PingLoss, JitterP50], Label::Loss),
        ];
        for (metrics, want) in cases {
            let fs: Vec<Finding> = metrics.iter().map(|m| finding(*m, Major, 5.0)).collect();
            assert_eq!(label(&fs).unwrap().label, *want, "{metrics:?}");
        }
        assert!(label(&[]).is_none());
        let v = label(&[finding(TcpP95, Minor, 5.0), finding(TcpP50, Critical, 4.0)]).unwrap();
        assert_eq!(v.main.metric, TcpP50);
        let v = label(&[finding(TcpP95, Major, 5.0), finding(TtfbP95, Major, 9.0)]).unwrap();
        assert_eq!(v.also, vec![Label::Server]);
    }

    #[test]
    fn details_read_as_sentences() {
        let f = finding(Metric::TcpP95, Severity::Critical, 40.0);
        assert_eq!(detail(&f), "tcp connect p95 412 ms vs usual 18 ms (±6)");
        let r = Finding {
            metric: Metric::ConnectFailures,
            observed: 0.45,
            baseline: 0.001,
            spread: 0.0,
            score: 12.0,
            severity: Severity::Major,
            trials: 20.0,
        };
        assert_eq!(
            detail(&r),
            "tcp connect failures 45 % of 20 tries vs usual 0.1 %"
        );
        assert_eq!(format_value(Metric::ThroughputP50, 2400.0), "2.4 Mbit/s");
    }
}
