//! Fault settings of the lab and the shared handle the servers read them from.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// Status of injected HTTP errors unless set.
const HTTP_ERROR_STATUS: u16 = 503;

/// Faults applied by the lab; `Default` means none. The same fields are the `--…` flags the
/// lab starts with and the JSON of `PUT /_lab/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(default)]
pub struct Faults {
    /// Delay before each DNS answer, in milliseconds.
    #[arg(long, env = "NETQOE_LAB_DNS_DELAY_MS", default_value_t)]
    pub dns_delay_ms: u64,
    /// Share of DNS queries answered with SERVFAIL (0..1).
    #[arg(long, env = "NETQOE_LAB_DNS_FAIL_RATE", default_value_t)]
    pub dns_fail_rate: f64,
    /// Delay after TCP accept before the server side of the TLS handshake proceeds, in
    /// milliseconds.
    #[arg(long, env = "NETQOE_LAB_TLS_DELAY_MS", default_value_t)]
    pub tls_delay_ms: u64,
    /// Delay before response headers, in milliseconds.
    #[arg(long, env = "NETQOE_LAB_TTFB_DELAY_MS", default_value_t)]
    pub ttfb_delay_ms: u64,
    /// Cap on the body send rate in kbit/s (1 kbit = 1000 bit); unlimited when unset.
    #[arg(long, env = "NETQOE_LAB_THROUGHPUT_KBPS")]
    pub throughput_kbps: Option<u64>,
    /// Share of requests answered with --http-error-status (0..1).
    #[arg(long, env = "NETQOE_LAB_HTTP_ERROR_RATE", default_value_t)]
    pub http_error_rate: f64,
    /// Status of injected HTTP errors.
    #[arg(long, env = "NETQOE_LAB_HTTP_ERROR_STATUS", default_value_t = HTTP_ERROR_STATUS)]
    pub http_error_status: u16,
    /// Share of connections reset abruptly (0..1).
    #[arg(long, env = "NETQOE_LAB_RESET_RATE", default_value_t)]
    pub reset_rate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            dns_delay_ms: 0,
            dns_fail_rate: 0.0,
            tls_delay_ms: 0,
            ttfb_delay_ms: 0,
            throughput_kbps: None,
            http_error_rate: 0.0,
            http_error_status: HTTP_ERROR_STATUS,
            reset_rate: 0.0,
        }
    }
}

impl Faults {
    /// Checks the ranges; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("dns_fail_rate", self.dns_fail_rate),
            ("http_error_rate", self.http_error_rate),
            ("reset_rate", self.reset_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        if !(100..=599).contains(&self.http_error_status) {
            return Err(format!(
                "http_error_status must be between 100 and 599, got {}",
                self.http_error_status
            ));
        }
        if self.throughput_kbps == Some(0) {
            return Err("throughput_kbps must be at least 1 when set".into());
        }
        Ok(())
    }
}

/// Returns true with probability `rate`.
pub(crate) fn roll(rate: f64) -> bool {
    rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate)
}

/// Shared, cheaply cloned fault settings.
#[derive(Clone, Default)]
pub(crate) struct FaultState(Arc<RwLock<Faults>>);

impl FaultState {
    pub(crate) fn new(f: Faults) -> Self {
        FaultState(Arc::new(RwLock::new(f)))
    }
    pub(crate) fn get(&self) -> Faults {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub(crate) fn set(&self, f: Faults) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = f;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_json_keeps_defaults() {
        let f: Faults = serde_json::from_str(r#"{"ttfb_delay_ms": 300}"#).unwrap();
        assert_eq!(f.ttfb_delay_ms, 300);
        assert_eq!(f.http_error_status, 503);
        assert_eq!(f.throughput_kbps, None);
    }

    #[test]
    fn validate_names_field() {
        let f = Faults {
            reset_rate: 1.5,
            ..Faults::default()
        };
        assert!(f.validate().unwrap_err().contains("reset_rate"));
        let f = Faults {
            http_error_status: 42,
            ..Faults::default()
        };
        assert!(f.validate().unwrap_err().contains("http_error_status"));
        assert!(Faults::default().validate().is_ok());
    }

    #[test]
    fn roll_extremes() {
        assert!(!roll(0.0));
        assert!(roll(1.0));
    }
}
