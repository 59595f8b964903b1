//! Child-process plumbing shared by the servers: free ports, binary lookup, readiness, stopping.

use std::io::{Read, Seek, SeekFrom};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral loopback port")
}

/// The first of `candidates` (absolute paths or names looked up in PATH) that exists.
pub(crate) fn find_binary(name: &str, candidates: &[PathBuf]) -> Result<PathBuf> {
    for c in candidates {
        if c.is_absolute() && c.is_file() {
            return Ok(c.clone());
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    bail!(
        "{name} is not installed (looked in PATH and {}): run `make setup`, which installs it with apt-get",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Last `max` bytes of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

/// Waits until `port` accepts TCP connections and `ready(log)` holds, or the child dies.
pub(crate) fn wait_ready(
    child: &mut Child,
    what: &str,
    port: u16,
    log: &Path,
    ready: impl Fn(&str) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().context("poll child")? {
            bail!(
                "{what} exited with {status} before becoming ready; log tail:\n{}",
                log_tail(log, 4000)
            );
        }
        let log_ok = std::fs::read_to_string(log)
            .map(|s| ready(&s))
            .unwrap_or(false);
        if log_ok && TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{what} did not become ready on port {port} within 30 s; log tail:\n{}",
                log_tail(log, 4000)
            );
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Sends `signal` to the child by pid and waits for it to exit, escalating to SIGKILL.
pub(crate) fn stop_child(child: &mut Child, signal: Signal, grace: Duration) {
    let pid = Pid::from_raw(child.id() as i32);
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = kill(pid, signal);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = kill(pid, Signal::SIGKILL);
    let _ = child.wait();
}

/// The child process of a server or a service while it runs: stopped by pid (and announced),
/// or detached to outlive its handle.
pub(crate) struct Running {
    name: String,
    child: Option<Child>,
}

impl Running {
    /// Nothing running yet under `name` (what the announcements call it).
    pub(crate) fn new(name: &str) -> Running {
        Running {
            name: name.to_string(),
            child: None,
        }
    }

    pub(crate) fn started(&mut self, child: Child) {
        self.child = Some(child);
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub(crate) fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Sends `signal` by pid and waits up to `grace` before SIGKILL; returns the exit status.
    pub(crate) fn stop(&mut self, signal: Signal, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        stop_child(&mut child, signal, grace);
        let done = if signal == Signal::SIGKILL {
            "killed"
        } else {
            "stopped"
        };
        crate::announce(&format!("{done} {} pid {}", self.name, child.id()));
        child.try_wait().ok().flatten()
    }

    /// Forgets the process without stopping it (dropping a `Child` neither kills nor waits
    /// for it); returns its pid, by which the caller stops it.
    pub(crate) fn detach(&mut self) -> Option<u32> {
        self.child.take().map(|c| c.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_names_itself_and_make_setup() {
        let err = find_binary(
            "netqoe-no-such-server",
            &[PathBuf::from("/usr/sbin/netqoe-no-such-server")],
        )
        .expect_err("binary does not exist");
        let msg = err.to_string();
        assert!(
            msg.contains("netqoe-no-such-server is not installed"),
            "{msg}"
        );
        assert!(msg.contains("make setup"), "{msg}");
    }

    #[test]
    fn free_ports_are_bindable() {
        let port = free_port();
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }
}
