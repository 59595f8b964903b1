//! Probe footprint: resident memory and CPU of the release probe measuring 20 targets every
//! 5 s against netqoe-lab, shipping to a real ingest. The limits are the budgets (20 MB,
//! 2 % of one core), so a ratio at or below 1 is within budget.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use netqoe_test_support::free_port;

use crate::harness::{peak_rss_mb, report, sibling, Env};
use crate::ingest::IngestProcess;

const TARGETS: usize = 20;
const RSS_BUDGET_MB: f64 = 20.0;
const CPU_BUDGET_PERCENT: f64 = 2.0;

pub async fn run(env: &Env) -> anyhow::Result<()> {
    let nats = crate::harness::nats_server()?;
    let ingest = IngestProcess::ready(&nats).await?;
    let dir = tempfile::tempdir()?;
    let (http, https, dns) = (free_port(), free_port(), free_port());
    let lab = Guard(
        Command::new(sibling("netqoe-lab")?)
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(["--https-listen", &format!("127.0.0.1:{https}")])
            .args(["--dns-listen", &format!("127.0.0.1:{dns}")])
            .arg("--cert-dir")
            .arg(dir.path().join("lab"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("spawn netqoe-lab")?,
    );
    let ca = dir.path().join("lab/ca.pem");
    wait_for(|| ca.is_file() && std::net::TcpStream::connect(("127.0.0.1", http)).is_ok())
        .await
        .context("netqoe-lab did not start")?;

    let config = dir.path().join("probe.toml");
    std::fs::write(
        &config,
        probe_config(&ingest.url, dir.path(), &ca, http, https, dns),
    )?;
    let probe = Guard(
        Command::new(sibling("netqoe-probe")?)
            .arg("--config")
            .arg(&config)
            .arg("--state-dir")
            .arg(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("spawn netqoe-probe")?,
    );
    let pid = probe.0.id();
    // Let every target run once before measuring the steady state.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let secs = (60.0 * env.scale).clamp(15.0, 60.0);
    let (t0, cpu0) = (Instant::now(), crate::harness::cpu_seconds(pid)?);
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let cpu = (crate::harness::cpu_seconds(pid)? - cpu0) / t0.elapsed().as_secs_f64() * 100.0;
    let rss = peak_rss_mb(pid)?;
    drop(probe);
    drop(lab);
    // The figures only count if the probe really measured and shipped all along.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    let stored = js
        .get_stream(netqoe_nats::EVENTS_STREAM)
        .await?
        .info()
        .await?
        .state
        .messages;
    let expected = (TARGETS as f64 * secs / 5.0) as u64;
    if stored < expected {
        bail!("the probe shipped {stored} events, expected at least {expected}");
    }
    report("probe_rss_mb", rss, "MB", RSS_BUDGET_MB);
    report(
        "probe_cpu_percent",
        cpu,
        "% of one core",
        CPU_BUDGET_PERCENT,
    );
    Ok(())
}

/// 20 targets every 5 s: plain HTTP, HTTPS through the lab's DNS and CA, and TCP connects.
fn probe_config(ingest: &str, dir: &Path, ca: &Path, http: u16, https: u16, dns: u16) -> String {
    let mut out = format!(
        "ingest_url = \"{ingest}\"\ntoken = \"bench\"\nclient_id = \"bench-probe\"\n\
         interval = \"5s\"\ntimeout = \"4s\"\nspool_dir = \"{}\"\n",
        dir.join("spool").display()
    );
    for i in 0..TARGETS {
        out.push_str(&match i % 3 {
            0 => format!(
                "\n[[targets]]\nurl = \"http://127.0.0.1:{http}/bytes/{}\"\nkind = \"http\"\n",
                16_384 + i
            ),
            1 => format!(
                "\n[[targets]]\nurl = \"https://t{i}.lab.netqoe:{https}/bytes/16384\"\nkind = \"http\"\n\
                 resolver = \"127.0.0.1:{dns}\"\nca_file = \"{}\"\n",
                ca.display()
            ),
            _ => format!("\n[[targets]]\nhost = \"127.0.0.1\"\nport = {http}\nkind = \"tcp\"\n"),
        });
    }
    out
}

async fn wait_for(ok: impl Fn() -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > Duration::from_secs(20) {
            bail!("timed out after 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A child process stopped with SIGTERM (then reaped) when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}
