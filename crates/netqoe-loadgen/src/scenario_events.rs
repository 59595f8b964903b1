//! How the scenario turns one series' character, the time of day, noise and any active
//! fault into one event (a child of `scenario`, so it reads the scenario's private state).

use netqoe_model::{ErrorStage, Event, NetworkContext, PingStats, Timings};
use rand::rngs::StdRng;
use rand::Rng;

use super::{Scenario, Series};
use crate::faults::{Fault, HttpSample, PingSample};
use crate::noise::{lognormal, round2};

/// Chance that one ping probe is lost outside incidents: one round in about 330 loses one of
/// its 10 probes (10 % loss in that minute), rarely enough to stay below one false anomalous
/// minute per 1000 should a diagnoser flag each.
const PROBE_LOSS: f64 = 0.0003;

impl Scenario {
    /// Load through the day: 0 at 02:00 UTC, 1 at 14:00 UTC.
    fn diurnal(ts: i64) -> f64 {
        let hours = (ts.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
        0.5 * (1.0 + (std::f64::consts::TAU * (hours - 14.0) / 24.0).cos())
    }

    pub(super) fn http_event(
        &self,
        s: &Series,
        ts: i64,
        rng: &mut StdRng,
        spike: bool,
        fault: Option<Fault>,
    ) -> Event {
        let client = &self.clients[s.client];
        let target = &self.targets[s.target];
        let load = Self::diurnal(ts);
        let mut x = HttpSample {
            dns: lognormal(rng, client.dns_ms, 0.3),
            tcp: lognormal(rng, s.tcp_ms, 0.12),
            tls: lognormal(rng, s.tcp_ms * 1.5, 0.12),
            ttfb: lognormal(rng, target.ttfb_ms * (1.0 + 0.2 * load), 0.12),
            kbps: lognormal(rng, s.kbps / (1.0 + 0.15 * load), 0.25),
            status: 200,
            fail: None,
        };
        if spike {
            if rng.random_bool(0.5) {
                x.tcp = x.tcp * 3.0 + 20.0;
            } else {
                x.ttfb *= 3.0;
            }
        }
        if rng.random_bool(self.cfg.error_rate) {
            match rng.random_range(0..3) {
                0 => {
                    x.tcp *= 1.2;
                    x.fail = Some(ErrorStage::Tcp);
                }
                1 => x.fail = Some(ErrorStage::Timeout),
                _ => {
                    x.status = 502;
                    x.fail = Some(ErrorStage::Http);
                }
            }
        }
        if let Some(f) = fault {
            if x.fail.is_none() {
                f.apply_http(&mut x, rng);
            }
        }
        let mut e = self.event_base(s, ts, rng);
        let t = e.timings.get_or_insert_with(Timings::default);
        t.dns_ms = Some(round2(x.dns));
        let stages: &[f64] = match x.fail {
            Some(ErrorStage::Dns) => &[x.dns],
            Some(ErrorStage::Tcp) => &[x.dns, x.tcp],
            Some(ErrorStage::Tls) | Some(ErrorStage::Timeout) => &[x.dns, x.tcp, x.tls],
            _ => &[x.dns, x.tcp, x.tls, x.ttfb],
        };
        if stages.len() > 1 {
            t.tcp_ms = Some(round2(x.tcp));
        }
        if stages.len() > 2 {
            t.tls_ms = Some(round2(x.tls));
        }
        if stages.len() > 3 {
            t.http_ttfb_ms = Some(round2(x.ttfb));
        }
        let mut total: f64 = stages.iter().sum();
        e.error_stage = x.fail;
        match x.fail {
            None => {
                // kbit/s are 1000 bit/s, so bytes·8 / kbps is milliseconds
                let transfer = target.bytes as f64 * 8.0 / x.kbps;
                t.transfer_ms = Some(round2(transfer));
                total += transfer;
                e.http_status = Some(200);
                e.bytes = Some(target.bytes);
                e.throughput_kbps = Some(round2(x.kbps));
            }
            Some(ErrorStage::Http) => {
                e.http_status = Some(x.status);
                e.error_message = Some(format!("http status {}", x.status));
            }
            Some(ErrorStage::Timeout) => {
                total = 10_000.0;
                e.error_message = Some("request timed out after 10s".into());
            }
            Some(stage) => {
                e.error_message = Some(format!("{} failed", stage.as_str()));
            }
        }
        t.total_ms = Some(round2(total));
        e
    }

    pub(super) fn ping_event(
        &self,
        s: &Series,
        ts: i64,
        rng: &mut StdRng,
        spike: bool,
        fault: Option<Fault>,
    ) -> Event {
        let client = &self.clients[s.client];
        let sent = self.cfg.ping_count;
        let lost = (0..sent).filter(|_| rng.random_bool(PROBE_LOSS)).count() as u32;
        let mut p = PingSample {
            sent,
            received: sent - lost,
            rtt_avg: lognormal(rng, s.tcp_ms, 0.08),
            jitter: lognormal(rng, client.jitter_ms, 0.3),
        };
        if spike {
            p.jitter = p.jitter * 4.0 + 5.0;
        }
        if let Some(f) = fault {
            f.apply_ping(&mut p, rng);
        }
        let mut e = self.event_base(s, ts, rng);
        e.ping = Some(if p.received == 0 {
            PingStats {
                sent: Some(p.sent),
                received: Some(0),
                ..PingStats::default()
            }
        } else {
            PingStats {
                sent: Some(p.sent),
                received: Some(p.received),
                rtt_min_ms: Some(round2((p.rtt_avg - p.jitter).max(p.rtt_avg * 0.5))),
                rtt_avg_ms: Some(round2(p.rtt_avg)),
                rtt_max_ms: Some(round2(p.rtt_avg + 2.0 * p.jitter)),
                jitter_ms: Some(round2(p.jitter)),
            }
        });
        e
    }

    fn event_base(&self, s: &Series, ts: i64, rng: &mut StdRng) -> Event {
        let id = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let mut e = Event::new(id, &s.client_id, ts, &s.target_str);
        e.probe_kind = s.kind;
        e.network_context = Some(NetworkContext {
            interface_type: Some(self.clients[s.client].interface),
            ip_version: Some(4),
            ..NetworkContext::default()
        });
        e
    }
}
