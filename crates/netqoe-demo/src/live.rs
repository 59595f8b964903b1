//! The live part of the demo: `netqoe-lab` as a target, two `netqoe-probe` clients measuring
//! it through ingest, and the lab fault switched on part way through.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Client ids of the live probes (their token admits `live-probe-*`).
pub const PROBES: [&str; 2] = ["live-probe-1", "live-probe-2"];

/// The fault switched on: every HTTP answer of the lab waits this long before its headers.
pub const FAULT_TTFB_MS: u64 = 600;

/// The lab's HTTP target as the probes name it (resolved through the lab's DNS).
pub fn http_target(lab_http: u16) -> String {
    format!("http://www.lab.netqoe:{lab_http}/")
}

/// A probe's configuration: the lab's page over HTTP (slowed by the fault) and a TCP connect
/// to the lab (which the fault leaves alone), every 2 s.
pub fn probe_config(
    ingest_url: &str,
    token: &str,
    client_id: &str,
    lab_http: u16,
    lab_dns: SocketAddr,
    spool: &Path,
) -> String {
    format!(
        r#"# netqoe-probe configuration written by netqoe-demo
ingest_url = "{ingest_url}"
token = "{token}"
client_id = "{client_id}"
interval = "2s"
timeout = "5s"
spool_dir = "{spool}"

[[targets]]
url = "{url}"
kind = "http"
resolver = "{lab_dns}"

[[targets]]
host = "127.0.0.1"
port = {lab_http}
kind = "tcp"
"#,
        spool = spool.display(),
        url = http_target(lab_http),
    )
}

/// `PUT /_lab/faults` with `faults` (JSON) on the lab's HTTP port.
pub fn set_faults(lab: SocketAddr, faults: &str) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&lab, Duration::from_secs(2))
        .with_context(|| format!("connect to the lab at {lab}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "PUT /_lab/faults HTTP/1.1\r\nHost: {lab}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{faults}",
        faults.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    if !answer.starts_with("HTTP/1.1 200") {
        bail!("the lab refused the faults {faults}: {answer}");
    }
    Ok(())
}

/// `time to first byte p50 2.4 ms before, 603 ms since` from the live target's mean
/// per-minute medians before and since the fault.
pub fn ttfb_shift(before: Option<f64>, after: Option<f64>) -> String {
    let ms = |v: Option<f64>| match v {
        None => "n/a".to_string(),
        Some(v) if v < 10.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    };
    format!(
        "time to first byte p50 {} before, {} since",
        ms(before),
        ms(after)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shift_reads_as_a_sentence() {
        assert_eq!(
            ttfb_shift(Some(2.4), Some(603.0)),
            "time to first byte p50 2.4 ms before, 603 ms since"
        );
        assert_eq!(
            ttfb_shift(None, Some(603.0)),
            "time to first byte p50 n/a before, 603 ms since"
        );
    }
}
