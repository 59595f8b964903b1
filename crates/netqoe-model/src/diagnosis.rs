//! The diagnoser's vocabulary (labels, scopes, severities) and the ground-truth record a
//! scenario writes and the evaluator reads: shared by `netqoe-loadgen` and `netqoe-diagnoser`.

use serde::{Deserialize, Serialize};

use crate::ProbeKind;

/// The bottleneck stage a window is blamed on (SPEC §6), as stored in `diagnoses.label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Dns,
    Connect,
    Tls,
    Server,
    Throughput,
    Errors,
    Loss,
}

impl Label {
    pub const ALL: [Label; 7] = [
        Self::Dns,
        Self::Connect,
        Self::Tls,
        Self::Server,
        Self::Throughput,
        Self::Errors,
        Self::Loss,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Server => "server",
            Self::Throughput => "throughput",
            Self::Errors => "errors",
            Self::Loss => "loss",
        }
    }

    pub fn parse(s: &str) -> Option<Label> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// Where a fault is localised (SPEC §6), as stored in `diagnoses.scope` and `incidents.scope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Most clients of one target see it: the target side.
    Target,
    /// One client sees it on most of its targets: the client side.
    Client,
    /// One client on one target only.
    Pair,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Self::Target, Self::Client, Self::Pair];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Target => "target",
            Self::Client => "client",
            Self::Pair => "pair",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// How bad an anomalous window is, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Minor,
    Major,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 3] = [Self::Minor, Self::Major, Self::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minor => "minor",
            Self::Major => "major",
            Self::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// One incident a scenario injected: the ground truth file is a JSON array of these.
///
/// `client_id` is set for `client` and `pair` scope, `target` for `target` and `pair` scope,
/// as in the `incidents` table. Times are milliseconds since the epoch; `end_ms` is exclusive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectedIncident {
    pub label: Label,
    pub scope: Scope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The probe kind of the affected series (`http` unless the fault is in ping loss, say).
    #[serde(default)]
    pub probe_kind: ProbeKind,
    pub start_ms: i64,
    pub end_ms: i64,
    /// What the scenario did, for people reading the file.
    #[serde(default)]
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_and_json() {
        for l in Label::ALL {
            assert_eq!(Label::parse(l.as_str()), Some(l));
            assert_eq!(
                serde_json::to_string(&l).unwrap(),
                format!("\"{}\"", l.as_str())
            );
        }
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        assert!(Severity::Critical > Severity::Minor);
        assert_eq!(Label::parse("nope"), None);
    }

    #[test]
    fn truth_records_read_with_defaults() {
        let t: InjectedIncident = serde_json::from_str(
            r#"{"label":"connect","scope":"target","target":"https://a/","start_ms":0,"end_ms":60000}"#,
        )
        .unwrap();
        assert_eq!(t.label, Label::Connect);
        assert_eq!(t.client_id, None);
        assert_eq!(t.probe_kind, ProbeKind::Http);
    }
}
