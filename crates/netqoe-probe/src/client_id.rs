//! client_id resolution: flag, then environment, then the state file, else generated and saved.

use std::path::Path;

/// Environment variable consulted after the flag.
pub const ENV: &str = "NETQOE_PROBE_CLIENT_ID";
/// State file name inside the state directory.
pub const FILE: &str = "client_id";

/// Resolves the client id; generates and saves one in `state_dir` when none is known.
pub fn resolve(flag: Option<&str>, state_dir: &Path) -> std::io::Result<String> {
    if let Some(id) = flag.filter(|s| !s.is_empty()) {
        return Ok(id.to_string());
    }
    if let Ok(id) = std::env::var(ENV) {
        if !id.is_empty() {
            return Ok(id);
        }
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
    #[test]
    fn generated_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::resolve(None, dir.path()).unwrap();
        let b = super::resolve(None, dir.path()).unwrap();
        assert_eq!(a, b);
        assert_eq!(super::resolve(Some("x"), dir.path()).unwrap(), "x");
    }
}
