//! Serde types of event schema v1 (SPEC §2); field names match the WireScope probe format.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The schema version every event is normalised to.
pub const SCHEMA_VERSION: &str = "1";

/// One measurement of one target by one probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema_version: String,
    pub event_id: Uuid,
    pub client_id: String,
    pub ts_ms: i64,
    pub target: String,
    #[serde(default)]
    pub probe_kind: ProbeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_context: Option<NetworkContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_kbps: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping: Option<PingStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_stage: Option<ErrorStage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recv_ts_ms: Option<i64>,
}

impl Event {
    /// A successful event with only the required fields set, for building events in code.
    pub fn new(event_id: Uuid, client_id: &str, ts_ms: i64, target: &str) -> Event {
        Event {
            schema_version: SCHEMA_VERSION.to_string(),
            event_id,
            client_id: client_id.to_string(),
            ts_ms,
            target: target.to_string(),
            probe_kind: ProbeKind::Http,
            network_context: None,
            timings: None,
            throughput_kbps: None,
            bytes: None,
            http_status: None,
            ping: None,
            tls: None,
            error_stage: None,
            error_message: None,
            recv_ts_ms: None,
        }
    }

    /// The address family the event says it measured over (`network_context.ip_version`),
    /// 0 when it does not say: part of the series key (SPEC §5).
    pub fn ip_version(&self) -> u8 {
        self.network_context
            .as_ref()
            .and_then(|c| c.ip_version)
            .unwrap_or(0)
    }

    /// True when the measurement succeeded (no failing stage).
    pub fn is_success(&self) -> bool {
        self.error_stage.is_none()
    }
}

/// What kind of measurement produced the event.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    #[default]
    Http,
    Tcp,
    Dns,
    Ping,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 4] = [Self::Http, Self::Tcp, Self::Dns, Self::Ping];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Tcp => "tcp",
            Self::Dns => "dns",
            Self::Ping => "ping",
        }
    }

    /// The kind named `s` (as `as_str` writes it).
    pub fn parse(s: &str) -> Option<ProbeKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The stage at which a measurement failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorStage {
    Dns,
    Tcp,
    Tls,
    Http,
    Throughput,
    Timeout,
}

impl ErrorStage {
    pub const ALL: [ErrorStage; 6] = [
        Self::Dns,
        Self::Tcp,
        Self::Tls,
        Self::Http,
        Self::Throughput,
        Self::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Http => "http",
            Self::Throughput => "throughput",
            Self::Timeout => "timeout",
        }
    }

    /// Parses a stage name case-insensitively, as the schema allows on input.
    pub fn parse(s: &str) -> Option<ErrorStage> {
        Self::ALL
            .into_iter()
            .find(|stage| stage.as_str().eq_ignore_ascii_case(s))
    }
}

/// Kind of network interface the probe measured through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InterfaceType {
    Ethernet,
    Wifi,
    Cellular,
    Vpn,
    Unknown,
}

impl InterfaceType {
    pub const ALL: [InterfaceType; 5] = [
        Self::Ethernet,
        Self::Wifi,
        Self::Cellular,
        Self::Vpn,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ethernet => "ethernet",
            Self::Wifi => "wifi",
            Self::Cellular => "cellular",
            Self::Vpn => "vpn",
            Self::Unknown => "unknown",
        }
    }
}

/// Where the probe measured from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_type: Option<InterfaceType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolver: Option<String>,
}

/// Phase timings in milliseconds; a phase that did not happen is absent, never 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_ttfb_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
}

/// Results of a round of ping probes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PingStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_min_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_avg_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_max_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
}

/// What the TLS handshake negotiated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TlsInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_not_after_ms: Option<i64>,
}
