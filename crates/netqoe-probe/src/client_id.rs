//! client_id resolution: flag (or its variable `NETQOE_PROBE_CLIENT_ID`), then the config's
//! `client_id`, then the state file, else generated once and saved.

use std::path::Path;

/// State file name inside the state directory.
pub const FILE: &str = "client_id";

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
    let id = format!("probe-{}", uuid::Uuid::new_v4().simple());
    let tmp = state_dir.join("client_id.tmp");
    std::fs::write(&tmp, &id)?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::resolve;

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
}
