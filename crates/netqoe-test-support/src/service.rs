//! The product's own binaries as child processes (ingest, aggregator, lab, probe…): found in
//! the cargo target directory beside the running executable, logging to a file, ready when a
//! health URL answers 200, and stopped by process id when dropped.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;

use crate::process::{log_tail, Running};

/// The path of the workspace binary `name` (`netqoe-ingest`, …) of the running build: the
/// profile directory above the test or tool executable (`target/debug/deps/x` →
/// `target/debug/name`), or the directory of the executable itself.
pub fn product_binary(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate the running executable")?;
    let mut dirs = Vec::new();
    if let Some(dir) = exe.parent() {
        dirs.push(dir.to_path_buf());
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(up) = dir.parent() {
                dirs.insert(0, up.to_path_buf());
            }
        }
    }
    for dir in &dirs {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!(
        "{name} is not built (looked in {}): run `cargo build --workspace --bins` (make test does)",
        dirs.iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// One running product binary.
pub struct Service {
    name: String,
    program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    log: PathBuf,
    /// Runs in a process group of its own (see [`Service::spawn_daemon`]).
    own_group: bool,
    process: Running,
}

impl Service {
    /// Starts binary `name` with `args` and extra environment `envs`, stdout and stderr
    /// appended to `log`. `RUST_LOG` defaults to `info` unless `envs` sets it.
    pub fn spawn<A, K, V>(name: &str, args: A, envs: &[(K, V)], log: &Path) -> Result<Service>
    where
        A: IntoIterator,
        A::Item: Into<OsString>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        Service::launch(name, args, envs, log, false)
    }

    /// As [`Service::spawn`], in a process group of its own, so that a terminal's Ctrl-C or
    /// hang-up aimed at the caller does not reach it and it can outlive the caller (see
    /// [`Service::detach`]).
    pub fn spawn_daemon<A, K, V>(
        name: &str,
        args: A,
        envs: &[(K, V)],
        log: &Path,
    ) -> Result<Service>
    where
        A: IntoIterator,
        A::Item: Into<OsString>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        Service::launch(name, args, envs, log, true)
    }

    fn launch<A, K, V>(
        name: &str,
        args: A,
        envs: &[(K, V)],
        log: &Path,
        own_group: bool,
    ) -> Result<Service>
    where
        A: IntoIterator,
        A::Item: Into<OsString>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let mut service = Service {
            name: name.to_string(),
            program: product_binary(name)?,
            args: args.into_iter().map(Into::into).collect(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
                .collect(),
            log: log.to_path_buf(),
            own_group,
            process: Running::new(name),
        };
        service.start()?;
        Ok(service)
    }

    /// Leaves the process running past this handle (nothing stops it on drop) and returns its
    /// process id; the caller stops it by pid.
    pub fn detach(mut self) -> Option<u32> {
        self.process.detach()
    }

    fn start(&mut self) -> Result<()> {
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .with_context(|| format!("open log {}", self.log.display()))
        };
        let mut cmd = Command::new(&self.program);
        if self.own_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        cmd.args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(open()?)
            .stderr(open()?);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", self.program.display()))?;
        crate::announce(&format!(
            "started {} pid {} (log {})",
            self.name,
            child.id(),
            self.log.display()
        ));
        self.process.started(child);
        Ok(())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `max` bytes of its log.
    pub fn log_tail(&self, max: u64) -> String {
        log_tail(&self.log, max)
    }

    /// Waits until `GET http://addr{path}` answers 200, failing early when the process exits.
    pub fn wait_ready(&mut self, addr: SocketAddr, path: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.process.child_mut() {
                if let Some(status) = child.try_wait().context("poll child")? {
                    bail!(
                        "{} exited with {status} before becoming ready; log tail:\n{}",
                        self.name,
                        self.log_tail(4000)
                    );
                }
            }
            if matches!(http_get(addr, path), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} was not ready on http://{addr}{path} within {limit:?}; log tail:\n{}",
                    self.name,
                    self.log_tail(4000)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether it has exited (and with what), without waiting.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let child = self.process.child_mut()?;
        child.try_wait().ok().flatten()
    }

    /// SIGTERM, waiting up to `grace` before SIGKILL; returns the exit status.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.process.stop(Signal::SIGTERM, grace)
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        self.process.stop(Signal::SIGKILL, Duration::from_secs(5));
    }

    /// Starts it again with the same arguments (after `stop` or `kill`).
    pub fn restart(&mut self) -> Result<()> {
        self.stop(Duration::from_secs(10));
        self.start()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// `GET http://addr{path}` over a plain HTTP/1.1 connection: status and body. Enough for
/// health checks and `/metrics` scrapes without an HTTP client in the test support.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status from {addr}{path}"))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The sum of every sample of metric `name` in a Prometheus text exposition whose labels
/// contain each of `labels` (`key="value"` strings); 0 when there is none.
pub fn metric_sum(exposition: &str, name: &str, labels: &[&str]) -> f64 {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r),
                None => (series, ""),
            };
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_pick_the_name_and_labels() {
        let text = "# HELP x_total x\n# TYPE x_total counter\nx_total{kind=\"dns\"} 3\n\
                    x_total{kind=\"http\"} 4\nx_total_other 9\nx_total 1\n";
        assert_eq!(metric_sum(text, "x_total", &[]), 8.0);
        assert_eq!(metric_sum(text, "x_total", &["kind=\"dns\""]), 3.0);
        assert_eq!(metric_sum(text, "missing", &[]), 0.0);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), "abcde");
    }

    #[test]
    fn a_missing_product_binary_says_how_to_build_it() {
        let err = product_binary("netqoe-no-such-binary").unwrap_err();
        assert!(err.to_string().contains("cargo build --workspace --bins"));
    }
}
