//! Phase timings, throughput and failing stages measured against the lab.

use netqoe_lab::{Faults, Lab, LabConfig};
use netqoe_model::ErrorStage;
use netqoe_probe::config::parse;
use tokio_util::sync::CancellationToken;

async fn lab(dir: &std::path::Path) -> (Lab, CancellationToken) {
    let token = CancellationToken::new();
    let lab = netqoe_lab::start(LabConfig::loopback(dir.to_path_buf()), token.clone())
        .await
        .unwrap();
    (lab, token)
}

fn https_target(lab: &Lab, path: &str, extra: &str) -> netqoe_probe::Target {
    let cfg = format!(
        "[[targets]]\nurl = \"https://www.lab.netqoe:{}{path}\"\nresolver = \"{}\"\nca_file = \"{}\"\ntimeout = \"10s\"\n{extra}",
        lab.https_addr().port(),
        lab.dns_addr(),
        lab.ca_cert_path().display()
    );
    parse(&cfg).unwrap().targets.remove(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Median of each phase over a few measurements: [dns, tcp, tls, ttfb].
async fn phases(t: &netqoe_probe::Target) -> [f64; 4] {
    let mut cols: [Vec<f64>; 4] = Default::default();
    for _ in 0..3 {
        let ev = netqoe_probe::measure(t, "it").await;
        assert!(ev.is_success(), "{:?}", ev.error_message);
        let tm = ev.timings.unwrap();
        for (i, v) in [tm.dns_ms, tm.tcp_ms, tm.tls_ms, tm.http_ttfb_ms]
            .into_iter()
            .enumerate()
        {
            cols[i].push(v.unwrap());
        }
    }
    cols.map(median)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_injected_delay_raises_only_its_phase() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, stop) = lab(dir.path()).await;
    let t = https_target(&lab, "/", "");
    let base = phases(&t).await;
    let cases: [(usize, u64, Faults); 3] = [
        (
            0,
            150,
            Faults {
                dns_delay_ms: 150,
                ..Default::default()
            },
        ),
        (
            2,
            200,
            Faults {
                tls_delay_ms: 200,
                ..Default::default()
            },
        ),
        (
            3,
            300,
            Faults {
                ttfb_delay_ms: 300,
                ..Default::default()
            },
        ),
    ];
    for (phase, delay, faults) in cases {
        lab.set_faults(faults);
        let got = phases(&t).await;
        for i in 0..4 {
            let rise = got[i] - base[i];
            let want = if i == phase { delay as f64 } else { 0.0 };
            assert!(
                (rise - want).abs() <= 20.0,
                "fault on phase {phase}: phase {i} rose {rise:.1} ms, expected {want} ms (base {base:?}, got {got:?})"
            );
        }
    }
    lab.set_faults(Faults::default());
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn throughput_cap_is_reported_within_15_percent() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, stop) = lab(dir.path()).await;
    lab.set_faults(Faults {
        throughput_kbps: Some(2000),
        ..Default::default()
    });
    let t = https_target(&lab, "/bytes/500000", "");
    let ev = netqoe_probe::measure(&t, "it").await;
    assert!(ev.is_success(), "{:?}", ev.error_message);
    assert_eq!(ev.bytes, Some(500_000));
    let kbps = ev.throughput_kbps.unwrap();
    assert!((kbps - 2000.0).abs() <= 300.0, "throughput {kbps} kbps");
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_stages_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, stop) = lab(dir.path()).await;

    let ok = netqoe_probe::measure(&https_target(&lab, "/", ""), "it").await;
    assert!(ok.is_success(), "{:?}", ok.error_message);
    assert!(ok.timings.as_ref().unwrap().tls_ms.is_some());
    assert!(ok.tls.as_ref().unwrap().cert_not_after_ms.unwrap() > netqoe_model::now_ms());

    let cfg = format!(
        "[[targets]]\nurl = \"https://www.lab.netqoe:{}/\"\nresolver = \"{}\"\n",
        lab.https_addr().port(),
        lab.dns_addr()
    );
    let no_ca = netqoe_probe::measure(&parse(&cfg).unwrap().targets[0], "it").await;
    assert_eq!(
        no_ca.error_stage,
        Some(ErrorStage::Tls),
        "{:?}",
        no_ca.error_message
    );

    let cfg = format!(
        "[[targets]]\nurl = \"http://missing.example.invalid:{}/\"\nresolver = \"{}\"\n",
        lab.http_addr().port(),
        lab.dns_addr()
    );
    let dns = netqoe_probe::measure(&parse(&cfg).unwrap().targets[0], "it").await;
    assert_eq!(
        dns.error_stage,
        Some(ErrorStage::Dns),
        "{:?}",
        dns.error_message
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = format!("[[targets]]\nurl = \"http://127.0.0.1:{port}/\"\n");
    let tcp = netqoe_probe::measure(&parse(&cfg).unwrap().targets[0], "it").await;
    assert_eq!(
        tcp.error_stage,
        Some(ErrorStage::Tcp),
        "{:?}",
        tcp.error_message
    );

    let cfg = format!(
        "[[targets]]\nurl = \"http://127.0.0.1:{}/status/503\"\nexpect_status = 200\n",
        lab.http_addr().port()
    );
    let http = netqoe_probe::measure(&parse(&cfg).unwrap().targets[0], "it").await;
    assert_eq!(http.error_stage, Some(ErrorStage::Http));
    assert_eq!(http.http_status, Some(503));
    stop.cancel();
}

/// Whether this process may open an ICMP socket: root (raw) or a group inside Linux's
/// `net.ipv4.ping_group_range` (datagram).
fn icmp_allowed() -> bool {
    let gid = nix::unistd::getegid().as_raw();
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range").unwrap_or_default();
    let mut bounds = range
        .split_whitespace()
        .filter_map(|v| v.parse::<u32>().ok());
    let in_range =
        matches!((bounds.next(), bounds.next()), (Some(lo), Some(hi)) if lo <= gid && gid <= hi);
    nix::unistd::geteuid().is_root() || in_range
}

#[tokio::test(flavor = "multi_thread")]
async fn ping_uses_icmp_echo_where_permitted_else_tcp_connects() {
    let localhost = "127.0.0.1".parse().unwrap();
    let replies = netqoe_probe::icmp::echo(localhost, 3, std::time::Duration::from_secs(1)).await;
    if icmp_allowed() {
        let replies = replies.expect("an ICMP socket opens");
        assert_eq!(replies.len(), 3);
        assert!(
            replies.iter().all(|r| r.is_some_and(|ms| ms < 100.0)),
            "{replies:?}"
        );
    } else {
        assert_eq!(
            replies.unwrap_err().kind(),
            std::io::ErrorKind::PermissionDenied
        );
    }

    // The ping kind reports loss and round trips either way.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = format!(
        "[[targets]]\nhost = \"127.0.0.1\"\nport = {}\nkind = \"ping\"\ncount = 4\n",
        listener.local_addr().unwrap().port()
    );
    let ev = netqoe_probe::measure(&parse(&cfg).unwrap().targets[0], "it").await;
    assert!(ev.is_success(), "{:?}", ev.error_message);
    let ping = ev.ping.unwrap();
    assert_eq!((ping.sent, ping.received), (Some(4), Some(4)));
    assert!(ping.rtt_max_ms.unwrap() >= ping.rtt_min_ms.unwrap());
}
