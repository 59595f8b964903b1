//! `state.json` under the demo home: the ports and the process ids of everything the demo
//! started, written after each start so that `down` can stop exactly those processes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The file name of the state under the demo home.
pub const STATE_FILE: &str = "state.json";

/// One process the demo started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// What it is (`nats-server`, `postgres`, `netqoe-ingest`, `netqoe-probe live-probe-1`…).
    pub role: String,
    pub pid: u32,
    /// File name of its program (`argv[0]`), checked against `/proc/<pid>/cmdline`.
    pub program: String,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22): a pid reused by
    /// another process has another start time.
    pub start_ticks: u64,
    /// Signal that stops it gracefully (`SIGTERM`, or `SIGINT` for PostgreSQL).
    pub stop_signal: String,
    /// Its log.
    pub log: PathBuf,
}

/// Loopback ports of the stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    pub nats: u16,
    pub postgres: u16,
    pub ingest: u16,
    pub ingest_metrics: u16,
    pub aggregator_metrics: u16,
    pub lab_http: u16,
    pub lab_https: u16,
    pub lab_dns: u16,
    pub lab_metrics: u16,
    pub probe_metrics: Vec<u16>,
    pub diagnoser_metrics: u16,
}

/// Everything `down` and a person need to find the stack.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// When `up` started, RFC 3339.
    pub started_at: String,
    pub ports: Ports,
    pub nats_url: String,
    pub database_url: String,
    pub ingest_url: String,
    /// In start order; `down` stops them in reverse.
    pub processes: Vec<Proc>,
}

impl State {
    /// Reads `home/state.json`; `None` when there is none.
    pub fn load(home: &Path) -> Result<Option<State>> {
        let path = home.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        let state = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a demo state file", path.display()))?;
        Ok(Some(state))
    }

    /// Writes `home/state.json` (through a temporary file and a rename).
    pub fn save(&self, home: &Path) -> Result<()> {
        let path = home.join(STATE_FILE);
        let tmp = home.join(format!("{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text + "\n").with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))
    }

    /// Records a started process and saves at once, so a crash right after leaves it known.
    pub fn record(&mut self, home: &Path, proc: Proc) -> Result<()> {
        self.processes.push(proc);
        self.save(home)
    }
}

/// Start time of `pid` in clock ticks since boot, from `/proc/<pid>/stat`; `None` when there
/// is no such process or it is a zombie (exited, not yet reaped).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field 22 is index 19.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// File name of `argv[0]` of `pid`.
pub fn program_of(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let argv0 = raw.split(|b| *b == 0).next()?;
    let argv0 = String::from_utf8_lossy(argv0);
    // A process that rewrote its title may have spaces in argv[0]: keep the first word.
    let first = argv0.split_whitespace().next()?;
    Some(
        Path::new(first)
            .file_name()?
            .to_string_lossy()
            .trim_end_matches(':')
            .to_string(),
    )
}

/// Describes the running process `pid` of program `program` (the file name it was started
/// from) for the state file. Waits a moment for a process just forked to have exec'd it.
pub fn describe(
    role: &str,
    pid: u32,
    program: &str,
    stop_signal: &str,
    log: &Path,
) -> Result<Proc> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while program_of(pid).as_deref() != Some(program) {
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "{role} (pid {pid}) does not run {program} (its command line: {:?})",
                program_of(pid)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let start_ticks =
        start_ticks(pid).with_context(|| format!("{role} (pid {pid}) exited right after start"))?;
    Ok(Proc {
        role: role.to_string(),
        pid,
        program: program.to_string(),
        start_ticks,
        stop_signal: stop_signal.to_string(),
        log: log.to_path_buf(),
    })
}

/// Whether `p` is still the very process the demo started (same pid, start time and program).
pub fn is_ours(p: &Proc) -> bool {
    start_ticks(p.pid) == Some(p.start_ticks) && program_of(p.pid).as_deref() == Some(&p.program)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_described_and_recognised() {
        let pid = std::process::id();
        let program = program_of(pid).unwrap();
        let me = describe("test", pid, &program, "SIGTERM", Path::new("/dev/null")).unwrap();
        assert!(is_ours(&me));
        let other_start = Proc {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(
            !is_ours(&other_start),
            "a reused pid has another start time"
        );
        let other_program = Proc {
            program: "nats-server".into(),
            ..me
        };
        assert!(!is_ours(&other_program));
    }

    #[test]
    fn state_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), None);
        let mut s = State {
            nats_url: "nats://127.0.0.1:14222".into(),
            ..State::default()
        };
        s.record(
            dir.path(),
            describe(
                "me",
                std::process::id(),
                &program_of(std::process::id()).unwrap(),
                "SIGTERM",
                Path::new("x.log"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), Some(s));
    }
}
