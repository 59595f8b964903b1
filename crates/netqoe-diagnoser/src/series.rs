//! A series' windows as the diagnoser reads them from `agg_1m`, and the metrics it judges.

use netqoe_model::Label;
use serde::{Deserialize, Serialize};

/// One series (SPEC §5): one client measuring one target with one probe kind over one family.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeriesKey {
    pub client_id: String,
    pub target: String,
    pub probe_kind: String,
    pub ip_version: i16,
}

impl SeriesKey {
    pub fn new(client_id: &str, target: &str, probe_kind: &str, ip_version: i16) -> SeriesKey {
        SeriesKey {
            client_id: client_id.into(),
            target: target.into(),
            probe_kind: probe_kind.into(),
            ip_version,
        }
    }

    /// `http`, `tcp/v4`, `ping/v6`: the kind and family as people read them.
    pub fn kind_family(&self) -> String {
        match self.ip_version {
            4 | 6 => format!("{}/v{}", self.probe_kind, self.ip_version),
            _ => self.probe_kind.clone(),
        }
    }
}

/// The columns of one `agg_1m` row the diagnoser uses. Timings in ms, throughput in kbit/s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    /// Window start, ms since the epoch (a multiple of 60 000).
    pub ts_ms: i64,
    pub count_total: i64,
    pub dns_errors: i64,
    pub tcp_errors: i64,
    pub tls_errors: i64,
    /// HTTP-level, throughput-stage and timeout failures: the `errors` label.
    pub other_errors: i64,
    pub dns_p50: Option<f64>,
    pub dns_p95: Option<f64>,
    pub tcp_p50: Option<f64>,
    pub tcp_p95: Option<f64>,
    pub tls_p50: Option<f64>,
    pub tls_p95: Option<f64>,
    pub ttfb_p50: Option<f64>,
    pub ttfb_p95: Option<f64>,
    pub total_p50: Option<f64>,
    pub total_p95: Option<f64>,
    pub throughput_p50: Option<f64>,
    pub ping_sent: i64,
    pub ping_received: i64,
    pub jitter_p50: Option<f64>,
}

/// How a metric is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A duration: bad when high, judged on a log scale (latencies are log-normal).
    Latency,
    /// Throughput: bad when low, judged on a log scale.
    Throughput,
    /// A failure fraction with its trial count: judged by a binomial test.
    Rate,
}

/// Every metric the diagnoser keeps a baseline for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Metric {
    DnsP50,
    DnsP95,
    TcpP50,
    TcpP95,
    TlsP50,
    TlsP95,
    TtfbP50,
    TtfbP95,
    TotalP50,
    TotalP95,
    ThroughputP50,
    JitterP50,
    DnsFailures,
    ConnectFailures,
    TlsFailures,
    ErrorRate,
    PingLoss,
}

impl Metric {
    pub const ALL: [Metric; 17] = [
        Metric::DnsP50,
        Metric::DnsP95,
        Metric::TcpP50,
        Metric::TcpP95,
        Metric::TlsP50,
        Metric::TlsP95,
        Metric::TtfbP50,
        Metric::TtfbP95,
        Metric::TotalP50,
        Metric::TotalP95,
        Metric::ThroughputP50,
        Metric::JitterP50,
        Metric::DnsFailures,
        Metric::ConnectFailures,
        Metric::TlsFailures,
        Metric::ErrorRate,
        Metric::PingLoss,
    ];

    /// Name in `baselines.metric` and `diagnoses.metric`.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::DnsP50 => "dns_p50",
            Metric::DnsP95 => "dns_p95",
            Metric::TcpP50 => "tcp_p50",
            Metric::TcpP95 => "tcp_p95",
            Metric::TlsP50 => "tls_p50",
            Metric::TlsP95 => "tls_p95",
            Metric::TtfbP50 => "ttfb_p50",
            Metric::TtfbP95 => "ttfb_p95",
            Metric::TotalP50 => "total_p50",
            Metric::TotalP95 => "total_p95",
            Metric::ThroughputP50 => "throughput_p50",
            Metric::JitterP50 => "jitter_p50",
            Metric::DnsFailures => "dns_failure_rate",
            Metric::ConnectFailures => "connect_failure_rate",
            Metric::TlsFailures => "tls_failure_rate",
            Metric::ErrorRate => "error_rate",
            Metric::PingLoss => "ping_loss",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// What operators call it, in a detail sentence.
    pub fn words(self) -> &'static str {
        match self {
            Metric::DnsP50 => "dns resolution p50",
            Metric::DnsP95 => "dns resolution p95",
            Metric::TcpP50 => "tcp connect p50",
            Metric::TcpP95 => "tcp connect p95",
            Metric::TlsP50 => "tls handshake p50",
            Metric::TlsP95 => "tls handshake p95",
            Metric::TtfbP50 => "time to first byte p50",
            Metric::TtfbP95 => "time to first byte p95",
            Metric::TotalP50 => "total time p50",
            Metric::TotalP95 => "total time p95",
            Metric::ThroughputP50 => "throughput p50",
            Metric::JitterP50 => "ping jitter",
            Metric::DnsFailures => "dns failures",
            Metric::ConnectFailures => "tcp connect failures",
            Metric::TlsFailures => "tls handshake failures",
            Metric::ErrorRate => "http errors and timeouts",
            Metric::PingLoss => "ping loss",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Metric::ThroughputP50 => Kind::Throughput,
            Metric::DnsFailures
            | Metric::ConnectFailures
            | Metric::TlsFailures
            | Metric::ErrorRate
            | Metric::PingLoss => Kind::Rate,
            _ => Kind::Latency,
        }
    }

    /// The stage label this metric points at. Total time alone points at the server.
    pub fn label(self) -> Label {
        match self {
            Metric::DnsP50 | Metric::DnsP95 | Metric::DnsFailures => Label::Dns,
            Metric::TcpP50 | Metric::TcpP95 | Metric::ConnectFailures => Label::Connect,
            Metric::TlsP50 | Metric::TlsP95 | Metric::TlsFailures => Label::Tls,
            Metric::TtfbP50 | Metric::TtfbP95 | Metric::TotalP50 | Metric::TotalP95 => {
                Label::Server
            }
            Metric::ThroughputP50 => Label::Throughput,
            Metric::ErrorRate => Label::Errors,
            Metric::JitterP50 | Metric::PingLoss => Label::Loss,
        }
    }

    /// Smallest change that can be anomalous, whatever the spread: (absolute, relative).
    /// Latencies: +abs ms and +rel; throughput: −rel; rates: +abs points.
    pub fn floors(self) -> (f64, f64) {
        match self {
            Metric::TotalP50 | Metric::TotalP95 => (30.0, 0.25),
            Metric::JitterP50 => (10.0, 0.5),
            Metric::ThroughputP50 => (0.0, 0.30),
            Metric::ErrorRate | Metric::PingLoss => (0.10, 0.0),
            Metric::DnsFailures | Metric::ConnectFailures | Metric::TlsFailures => (0.10, 0.0),
            _ => (20.0, 0.20),
        }
    }

    /// `diagnoses.metric` names of p50/p95 pairs: the columns a chart of this metric draws.
    pub fn chart_columns(self) -> (&'static str, Option<&'static str>) {
        match self {
            Metric::DnsP50 | Metric::DnsP95 | Metric::DnsFailures => ("dns_p50", Some("dns_p95")),
            Metric::TcpP50 | Metric::TcpP95 | Metric::ConnectFailures => {
                ("tcp_p50", Some("tcp_p95"))
            }
            Metric::TlsP50 | Metric::TlsP95 | Metric::TlsFailures => ("tls_p50", Some("tls_p95")),
            Metric::TtfbP50 | Metric::TtfbP95 => ("ttfb_p50", Some("ttfb_p95")),
            Metric::TotalP50 | Metric::TotalP95 => ("total_p50", Some("total_p95")),
            Metric::ThroughputP50 => ("throughput_p50", None),
            Metric::JitterP50 => ("jitter_p50", None),
            Metric::ErrorRate => ("error_rate", None),
            Metric::PingLoss => ("ping_loss", None),
        }
    }
}

/// A rate's (trials, failures) in one window.
pub type Trials = (f64, f64);

impl Window {
    /// The value of a timing or throughput metric, if the window has samples of it.
    pub fn value(&self, m: Metric) -> Option<f64> {
        let v = match m {
            Metric::DnsP50 => self.dns_p50,
            Metric::DnsP95 => self.dns_p95,
            Metric::TcpP50 => self.tcp_p50,
            Metric::TcpP95 => self.tcp_p95,
            Metric::TlsP50 => self.tls_p50,
            Metric::TlsP95 => self.tls_p95,
            Metric::TtfbP50 => self.ttfb_p50,
            Metric::TtfbP95 => self.ttfb_p95,
            Metric::TotalP50 => self.total_p50,
            Metric::TotalP95 => self.total_p95,
            Metric::ThroughputP50 => self.throughput_p50,
            Metric::JitterP50 => self.jitter_p50,
            _ => return self.trials(m).map(|(n, k)| k / n),
        };
        v.filter(|v| v.is_finite() && *v >= 0.0)
    }

    /// (trials, failures) of a rate metric; None when nothing was tried.
    pub fn trials(&self, m: Metric) -> Option<Trials> {
        let n = self.count_total as f64;
        let (n, k) = match m {
            Metric::DnsFailures => (n, self.dns_errors as f64),
            Metric::ConnectFailures => (n, self.tcp_errors as f64),
            Metric::TlsFailures => (n, self.tls_errors as f64),
            Metric::ErrorRate => (n, self.other_errors as f64),
            Metric::PingLoss => (
                self.ping_sent as f64,
                (self.ping_sent - self.ping_received).max(0) as f64,
            ),
            _ => return None,
        };
        (n > 0.0).then_some((n, k.min(n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_point_at_their_stage() {
        for m in Metric::ALL {
            assert_eq!(Metric::parse(m.as_str()), Some(m));
        }
        assert_eq!(Metric::TcpP95.label(), Label::Connect);
        assert_eq!(Metric::ConnectFailures.label(), Label::Connect);
        assert_eq!(Metric::TtfbP50.label(), Label::Server);
        assert_eq!(Metric::PingLoss.label(), Label::Loss);
    }

    #[test]
    fn rates_come_from_counts() {
        let w = Window {
            count_total: 4,
            tcp_errors: 1,
            ping_sent: 10,
            ping_received: 7,
            ..Default::default()
        };
        assert_eq!(w.trials(Metric::ConnectFailures), Some((4.0, 1.0)));
        assert_eq!(w.value(Metric::ConnectFailures), Some(0.25));
        assert_eq!(w.trials(Metric::PingLoss), Some((10.0, 3.0)));
        assert_eq!(w.value(Metric::TcpP50), None);
        let empty = Window::default();
        assert_eq!(empty.trials(Metric::ErrorRate), None);
    }
}
