//! client_id resolution and checking: flag (or its variable `NETQOE_PROBE_CLIENT_ID`), then
//! the config's `client_id`, then the state file, else generated once and saved (for `--once`,
//! generated for the run and never saved).

use std::path::Path;

/// State file name inside the state directory.
pub const FILE: &str = "client_id";

/// Checks that `id` is a client id ingest accepts and that can end a NATS subject
/// (`qoe.events.<client_id>`), by the model's own rule.
pub fn check(id: &str) -> Result<(), String> {
    match netqoe_model::client_id_problem(id) {
        Some(problem) => Err(format!("{id:?} {problem}")),
        None => Ok(()),
    }
}

/// The client id of a `--once` run: `flag`, then `config`, then the state file when it can be
/// read, else a fresh `probe-<uuid>` for this run only. Writes nothing.
pub fn resolve_once(flag: Option<&str>, config: Option<&str>, state_dir: &Path) -> String {
    if let Some(id) = flag.or(config).filter(|s| !s.is_empty()) {
        return id.to_string();
    }
    std::fs::read_to_string(state_dir.join(FILE))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(generate)
}

fn generate() -> String {
    format!("probe-{}", uuid::Uuid::new_v4().simple())
}

/// Resolves the client id: `flag` (the command line, or `NETQOE_PROBE_CLIENT_ID` through it),
/// then `config`, then the state file; generates and saves one in `state_dir` when none is
/// known.
pub fn resolve(
    flag: Option<&str>,
    config: Option<&str>,
    state_dir: &Path,
) -> std::io::Result<String> {
    if let Some(id) = flag.or(config).filter(|s| !s.is_empty()) {
        return Ok(id.to_string());
    }
    let path = state_dir.join(FILE);
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    std::fs::create_dir_all(state_dir)?;
    let id = generate();
    let tmp = state_dir.join("client_id.tmp");
    std::fs::write(&tmp, &id)?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::{check, resolve, resolve_once};

    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = resolve(None, None, dir.path()).unwrap();
        let b = resolve(None, None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("probe-"), "{a}");
    }

    #[test]
    fn flag_wins_over_config_which_wins_over_the_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let saved = resolve(None, None, dir.path()).unwrap();
        assert_eq!(resolve(Some("x"), Some("y"), dir.path()).unwrap(), "x");
        assert_eq!(resolve(None, Some("y"), dir.path()).unwrap(), "y");
        assert_eq!(resolve(Some(""), None, dir.path()).unwrap(), saved);
    }

    #[test]
    fn once_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let a = resolve_once(None, None, &state);
        assert!(a.starts_with("probe-") && check(&a).is_ok(), "{a}");
        assert!(!state.exists(), "no state directory created");
        assert_eq!(resolve_once(None, Some("cfg"), &state), "cfg");
        let saved = resolve(None, None, &state).unwrap();
        assert_eq!(resolve_once(None, None, &state), saved);
    }

    #[test]
    fn ids_that_cannot_end_a_subject_are_refused() {
        for ok in ["edge-1", "a.b", "probe:x_y", "A1"] {
            assert!(check(ok).is_ok(), "{ok}");
        }
        for bad in ["a..b", ".x", "x.", ".", "", "a b", "é"] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check(&"a".repeat(129)).is_err());
        assert!(check("a..b").unwrap_err().contains("dot-separated part"));
    }
}
