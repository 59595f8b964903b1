//! A real PostgreSQL cluster (initdb into a temporary directory) on a free loopback port.
//!
//! initdb and postgres refuse to run as root, so under root (as in CI) both run as the
//! `postgres` system user (or `nobody`), which is given the temporary directory.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User};
use sqlx::{Connection, Executor};
use tempfile::TempDir;

use crate::process::{find_binary, free_port, log_tail, stop_child, wait_ready, Running};

/// A running PostgreSQL server; stopped by pid when dropped.
pub struct PgServer {
    bin_dir: PathBuf,
    port: u16,
    /// The temporary directory of [`Self::start`], removed on drop; `None` for [`Self::start_at`].
    _temp: Option<TempDir>,
    /// Holds `data/` (the cluster) and `sock/`.
    dir: PathBuf,
    /// Where the server's stdout and stderr go.
    log: PathBuf,
    /// Runs in a process group of its own (long-lived servers outside a test).
    own_group: bool,
    run_as: Option<(Uid, Gid)>,
    process: Running,
}

/// Directory of the PostgreSQL server binaries: `NETQOE_PG_BINDIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin`, else wherever `initdb` is in PATH.
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("NETQOE_PG_BINDIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let initdb = find_binary(
        "initdb",
        &[PathBuf::from("/usr/lib/postgresql/<version>/bin/initdb")],
    )
    .context("PostgreSQL server binaries (initdb, postgres) are not installed")?;
    Ok(initdb.parent().unwrap_or(Path::new("/")).to_path_buf())
}

/// [`bin_dir`], checked to hold initdb and postgres.
fn checked_bin_dir() -> Result<PathBuf> {
    let bin_dir = bin_dir()?;
    for b in ["initdb", "postgres"] {
        if !bin_dir.join(b).is_file() {
            bail!(
                "{} is missing: run `make setup` to install the PostgreSQL server",
                bin_dir.join(b).display()
            );
        }
    }
    Ok(bin_dir)
}

/// Under root, the unprivileged user that owns and runs the cluster.
fn run_as() -> Result<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        if let Some(user) = User::from_name(name).context("look up user")? {
            return Ok(Some((user.uid, user.gid)));
        }
    }
    bail!("running as root but neither a `postgres` nor a `nobody` user exists to run PostgreSQL: run `make setup`")
}

impl PgServer {
    /// Runs initdb into a temporary directory, starts postgres on a free port, waits for it.
    pub fn start() -> Result<PgServer> {
        let bin_dir = checked_bin_dir()?;
        let run_as = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("netqoe-pg-")
            .tempdir()
            .context("create postgres temp dir")?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(dir.path(), Some(uid), Some(gid))
                .context("chown postgres temp dir")?;
        }
        let server = PgServer {
            bin_dir,
            port: free_port(),
            log: dir.path().join("postgres.log"),
            dir: dir.path().to_path_buf(),
            _temp: Some(dir),
            own_group: false,
            run_as,
            process: Running::new("postgres"),
        };
        server.initdb()?;
        let mut server = server;
        server.spawn()?;
        Ok(server)
    }

    /// Starts postgres on `port` with its cluster in `dir/data` (initdb'd when missing, kept
    /// after stop), its output appended to `log`, in a process group of its own so that it can
    /// outlive the caller (see [`Self::detach`]). Under root, `dir` is given to the user that
    /// runs the server, and every directory above it must be searchable by that user.
    pub fn start_at(dir: &Path, port: u16, log: &Path) -> Result<PgServer> {
        let bin_dir = checked_bin_dir()?;
        let run_as = run_as()?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("create postgres dir {}", dir.display()))?;
        if let Some((uid, gid)) = run_as {
            nix::unistd::chown(dir, Some(uid), Some(gid))
                .with_context(|| format!("chown {}", dir.display()))?;
        }
        let mut server = PgServer {
            bin_dir,
            port,
            _temp: None,
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            own_group: true,
            run_as,
            process: Running::new("postgres"),
        };
        if !dir.join("data").join("PG_VERSION").is_file() {
            server.initdb()?;
        }
        server.spawn()?;
        Ok(server)
    }

    fn command(&self, binary: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(binary));
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid.as_raw()).gid(gid.as_raw());
        }
        if self.own_group {
            cmd.process_group(0);
        }
        cmd.current_dir(&self.dir).stdin(Stdio::null());
        cmd
    }

    fn initdb(&self) -> Result<()> {
        let log_path = self.dir.join("initdb.log");
        let log = File::create(&log_path)?;
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(&log_path, Some(uid), Some(gid))?;
        }
        let status = self
            .command("initdb")
            .args([
                "-D",
                "data",
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .context("run initdb")?;
        if !status.success() {
            bail!(
                "initdb failed with {status}:\n{}",
                log_tail(&log_path, 4000)
            );
        }
        Ok(())
    }

    fn spawn(&mut self) -> Result<()> {
        let log_path = self.log.clone();
        let log = File::options().create(true).append(true).open(&log_path)?;
        let start_len = log.metadata()?.len() as usize;
        let sock = self.dir.join("sock");
        std::fs::create_dir_all(&sock)?;
        if let Some((uid, gid)) = self.run_as {
            nix::unistd::chown(&sock, Some(uid), Some(gid))?;
        }
        let mut child = self
            .command("postgres")
            .args([
                "-D",
                "data",
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-k",
            ])
            .arg(&sock)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                // A fresh cluster creates every WAL segment it writes; a long-running server
                // recycles old ones. Not zero-filling new segments keeps throttled tests and
                // benchmarks from measuring that start-up cost.
                "-c",
                "wal_init_zero=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=128MB",
            ])
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn postgres")?;
        let ready = wait_ready(&mut child, "postgres", self.port, &log_path, |log| {
            log.get(start_len..)
                .is_some_and(|new| new.contains("database system is ready to accept connections"))
        });
        if let Err(e) = ready {
            stop_child(&mut child, Signal::SIGQUIT, Duration::from_secs(5));
            return Err(e);
        }
        crate::announce(&format!(
            "started postgres pid {} on 127.0.0.1:{} (data {})",
            child.id(),
            self.port,
            self.dir.join("data").display()
        ));
        self.process.started(child);
        Ok(())
    }

    /// URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Process id of the postmaster while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Creates an empty database and returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .context("connect to the test postgres")?;
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .with_context(|| format!("create database {name}"))?;
        Ok(self.url(name))
    }

    /// Stops the server (fast shutdown, SIGINT by pid); the data is kept for [`Self::restart`].
    pub fn stop(&mut self) {
        self.process.stop(Signal::SIGINT, Duration::from_secs(20));
    }

    /// Where the server's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Leaves the server running past this handle (nothing stops it on drop) and returns the
    /// postmaster's process id; the caller stops it by pid (SIGINT for a fast shutdown).
    pub fn detach(mut self) -> Option<u32> {
        self.process.detach()
    }

    /// Starts the server again on the same port with the same data.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Immediate shutdown: the data directory is thrown away anyway.
        self.process.stop(Signal::SIGQUIT, Duration::from_secs(10));
    }
}
