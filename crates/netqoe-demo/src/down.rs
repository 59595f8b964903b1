//! `down`: stops exactly the processes recorded in `state.json`, newest first, each by pid and
//! only while that pid still is the process the demo started.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::state::{is_ours, Proc, State, STATE_FILE};

/// What `down` did to one recorded process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped with its graceful signal.
    Stopped,
    /// Did not exit within the grace period and was killed.
    Killed,
    /// Had already exited, or its pid now belongs to another process (left alone).
    Gone,
}

/// Stops every process of the demo under `home` and removes `state.json`. Returns each
/// process with what happened to it; an empty list when no demo state exists.
pub fn down(home: &Path) -> Result<Vec<(Proc, Outcome)>> {
    let Some(state) = State::load(home)? else {
        return Ok(Vec::new());
    };
    let mut done = Vec::new();
    for p in state.processes.iter().rev() {
        let outcome = stop(p, Duration::from_secs(20));
        done.push((p.clone(), outcome));
    }
    let _ = std::fs::remove_file(home.join(STATE_FILE));
    Ok(done)
}

/// Stops `p` if it still is ours: its stop signal, then SIGKILL after `grace`.
pub fn stop(p: &Proc, grace: Duration) -> Outcome {
    if !is_ours(p) {
        return Outcome::Gone;
    }
    let pid = Pid::from_raw(p.pid as i32);
    let signal = Signal::from_str(&p.stop_signal).unwrap_or(Signal::SIGTERM);
    if kill(pid, signal).is_err() {
        return Outcome::Gone;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_ours(p) {
            return Outcome::Stopped;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_ours(p) {
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while is_ours(p) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Outcome::Killed
}

/// Prints what `down` did, one line per process.
pub fn print(home: &Path, done: &[(Proc, Outcome)]) {
    if done.is_empty() {
        println!(
            "no demo is running under {} (no {STATE_FILE})",
            home.display()
        );
        return;
    }
    for (p, outcome) in done {
        let what = match outcome {
            Outcome::Stopped => "stopped",
            Outcome::Killed => "killed (did not stop in time)",
            Outcome::Gone => "already gone",
        };
        println!("  {:<28} pid {:<8} {what}", p.role, p.pid);
    }
    println!(
        "demo stopped; its data stays under {} until the next `make demo`",
        home.display()
    );
}
