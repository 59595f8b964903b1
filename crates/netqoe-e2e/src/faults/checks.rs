//! The security table of docs/reliability.md: one row per check the security tests make
//! (what was tried, what came of it), written under `target/reliability/security/`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{record_json, recorded, reliability_dir};
use crate::report;

/// One row of the security table.
#[derive(Debug, Clone)]
pub struct Check {
    pub check: String,
    pub tried: String,
    pub outcome: String,
}

impl Check {
    pub fn new(check: &str, tried: impl Into<String>, outcome: impl Into<String>) -> Check {
        Check {
            check: check.to_string(),
            tried: tried.into(),
            outcome: outcome.into(),
        }
    }

    /// Prints the row and writes it to `target/reliability/security/<key>.json`.
    pub fn record(&self, key: &str) -> Result<()> {
        report(&format!("security: {}", self.markdown()));
        let json = serde_json::json!({
            "check": self.check, "tried": self.tried, "outcome": self.outcome,
        });
        record_json(&security_dir()?, key, &json)
    }

    fn markdown(&self) -> String {
        format!("| {} | {} | {} |", self.check, self.tried, self.outcome)
    }
}

/// Removes the check recorded under `key` by an earlier run.
pub fn forget_check(key: &str) {
    if let Ok(dir) = security_dir() {
        let _ = std::fs::remove_file(dir.join(format!("{key}.json")));
    }
}

fn security_dir() -> Result<PathBuf> {
    Ok(reliability_dir()?.join("security"))
}

/// The markdown table of every recorded check, ordered by key.
pub fn security_table() -> Result<String> {
    let mut out = String::from("| check | what was tried | outcome |\n|---|---|---|\n");
    for (f, v) in recorded(&security_dir()?, "the security tests")? {
        let field = |k: &str| v[k].as_str().map(str::to_string);
        let row = (|| {
            Some(Check::new(
                &field("check")?,
                field("tried")?,
                field("outcome")?,
            ))
        })()
        .with_context(|| format!("malformed {}", f.display()))?;
        out.push_str(&row.markdown());
        out.push('\n');
    }
    Ok(out)
}
