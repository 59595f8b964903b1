//! Step-by-step progress on stdout (`[k/N] what … detail`), the time each step took, and
//! running a product tool as a child process while its progress is shown.

use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Numbered steps; each one's duration is kept for the summary.
pub struct Progress {
    total: usize,
    current: usize,
    what: String,
    started: Instant,
    last_print: Instant,
    tty: bool,
    /// Width of the last in-place line, to blank it out.
    line_len: usize,
    /// (what, how long) of every finished step.
    pub timings: Vec<(String, Duration)>,
}

/// A failed step: which one, and where its log is.
#[derive(Debug)]
pub struct StepFailed {
    pub step: usize,
    pub total: usize,
    pub what: String,
    pub log: Option<PathBuf>,
}

impl std::fmt::Display for StepFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {}/{} ({}) failed",
            self.step, self.total, self.what
        )?;
        if let Some(log) = &self.log {
            write!(f, "; its log: {}", log.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for StepFailed {}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            total,
            current: 0,
            what: String::new(),
            started: Instant::now(),
            last_print: Instant::now(),
            tty: std::io::stdout().is_terminal(),
            line_len: 0,
            timings: Vec::new(),
        }
    }

    /// Runs step `what`: prints its start, then its outcome and duration. On failure the error
    /// says which step failed and where `log` is.
    pub fn step<T>(
        &mut self,
        what: &str,
        log: Option<&Path>,
        f: impl FnOnce(&mut Progress) -> Result<(T, String)>,
    ) -> Result<T> {
        self.current += 1;
        self.what = what.to_string();
        self.started = Instant::now();
        self.last_print = Instant::now();
        self.line_len = 0;
        println!("[{}/{}] {what} ...", self.current, self.total);
        match f(self) {
            Ok((value, detail)) => {
                let took = self.started.elapsed();
                self.clear_line();
                println!(
                    "[{}/{}] {what}: {detail} ({:.1} s)",
                    self.current,
                    self.total,
                    took.as_secs_f64()
                );
                self.timings.push((what.to_string(), took));
                Ok(value)
            }
            Err(error) => {
                self.clear_line();
                Err(error.context(StepFailed {
                    step: self.current,
                    total: self.total,
                    what: what.to_string(),
                    log: log.map(Path::to_path_buf),
                }))
            }
        }
    }

    /// Shows how far the current step is: in place on a terminal, else a line every 5 s.
    pub fn update(&mut self, detail: &str) {
        let line = format!(
            "[{}/{}] {} ... {detail} ({:.0} s)",
            self.current,
            self.total,
            self.what,
            self.started.elapsed().as_secs_f64()
        );
        let mut out = std::io::stdout().lock();
        if self.tty {
            let pad = self.line_len.saturating_sub(line.len());
            let _ = write!(out, "\r{line}{}", " ".repeat(pad));
            self.line_len = line.len();
        } else if self.last_print.elapsed() >= Duration::from_secs(5) {
            let _ = writeln!(out, "{line}");
            self.last_print = Instant::now();
        }
        let _ = out.flush();
    }

    fn clear_line(&mut self) {
        if self.tty && self.line_len > 0 {
            print!("\r{}\r", " ".repeat(self.line_len));
            self.line_len = 0;
        }
    }
}

/// Runs `program` with `args` and `envs`, stdout and stderr appended to `log`, calling
/// `poll` twice a second for a progress detail; kills it after `limit`. Returns its status.
pub fn run_tool<I, S>(
    progress: &mut Progress,
    program: &Path,
    args: I,
    envs: &[(&str, String)],
    log: &Path,
    limit: Duration,
    mut poll: impl FnMut() -> Option<String>,
) -> Result<ExitStatus>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open log {}", log.display()))
    };
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "info")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .spawn()
        .with_context(|| format!("start {}", program.display()))?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().context("poll child")? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{} did not finish within {}",
                program.display(),
                humantime::format_duration(limit)
            );
        }
        if let Some(detail) = poll() {
            progress.update(&detail);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Fails with the log's tail unless the tool exited successfully.
pub fn ensure_ok(status: ExitStatus, log: &Path) -> Result<()> {
    if !status.success() {
        bail!("exited with {status}; log tail:\n{}", log_tail(log, 3000));
    }
    Ok(())
}

/// The last `max` bytes of a log, for error messages.
pub fn log_tail(path: &Path, max: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let start = text.len().saturating_sub(max);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn a_failed_step_names_itself_and_its_log() {
        let mut p = Progress::new(3);
        let err = p
            .step("start nats-server", Some(Path::new("/x/nats.log")), |_| {
                Err::<((), String), _>(anyhow::anyhow!("port taken"))
            })
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.starts_with("step 1/3 (start nats-server) failed; its log: /x/nats.log"),
            "{text}"
        );
        assert!(text.contains("port taken"), "{text}");
    }
}
