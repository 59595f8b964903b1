//! A real `nats-server -js` on a free loopback port with its store in a temporary directory.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::process::{find_binary, free_port, stop_child, wait_ready, Running};

/// A running nats-server with JetStream; stopped by pid when dropped.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    /// The temporary directory of [`Self::start`], removed on drop; `None` for [`Self::start_at`].
    _temp: Option<TempDir>,
    /// Where the store lives.
    dir: PathBuf,
    /// Where stdout and stderr go.
    log: PathBuf,
    /// Runs in a process group of its own (long-lived servers outside a test).
    own_group: bool,
    process: Running,
}

impl NatsServer {
    /// Starts nats-server with JetStream on a free port and waits until it is ready.
    pub fn start() -> Result<NatsServer> {
        let binary = find_binary("nats-server", &[PathBuf::from("/usr/sbin/nats-server")])?;
        let dir = tempfile::Builder::new()
            .prefix("netqoe-nats-")
            .tempdir()
            .context("create nats temp dir")?;
        let mut server = NatsServer {
            binary,
            port: free_port(),
            log: dir.path().join("nats.log"),
            dir: dir.path().to_path_buf(),
            _temp: Some(dir),
            own_group: false,
            process: Running::new("nats-server"),
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts nats-server with JetStream on `port` with its store under `dir` (created when
    /// missing, kept after stop) and its output appended to `log`, in a process group of its
    /// own so that it can outlive the caller (see [`Self::detach`]).
    pub fn start_at(dir: &Path, port: u16, log: &Path) -> Result<NatsServer> {
        let binary = find_binary("nats-server", &[PathBuf::from("/usr/sbin/nats-server")])?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create nats dir {}", dir.display()))?;
        let mut server = NatsServer {
            binary,
            port,
            _temp: None,
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            own_group: true,
            process: Running::new("nats-server"),
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<()> {
        let log_path = self.log.clone();
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .context("create nats log")?;
        let start_len = log.metadata()?.len() as usize;
        let store = self.dir.join("jetstream");
        let mut cmd = Command::new(&self.binary);
        if self.own_group {
            cmd.process_group(0);
        }
        let mut child = cmd
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", self.binary.display()))?;
        let ready = wait_ready(&mut child, "nats-server", self.port, &log_path, |log| {
            log.get(start_len..)
                .is_some_and(|new| new.contains("Server is ready"))
        });
        if let Err(e) = ready {
            stop_child(&mut child, Signal::SIGKILL, Duration::from_secs(1));
            return Err(e);
        }
        crate::announce(&format!(
            "started nats-server -js pid {} on 127.0.0.1:{} (store {})",
            child.id(),
            self.port,
            store.display()
        ));
        self.process.started(child);
        Ok(())
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Stops the server gracefully (SIGTERM by pid); its store is kept for [`Self::restart`].
    pub fn stop(&mut self) {
        self.process.stop(Signal::SIGTERM, Duration::from_secs(10));
    }

    /// Kills the server (SIGKILL by pid), as a crash would.
    pub fn kill(&mut self) {
        self.process.stop(Signal::SIGKILL, Duration::from_secs(1));
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Leaves the server running past this handle (nothing stops it on drop) and returns its
    /// process id; the caller stops it by pid.
    pub fn detach(mut self) -> Option<u32> {
        self.process.detach()
    }

    /// Starts the server again on the same port with the same store.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
