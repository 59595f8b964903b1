//! The workspace stays easy to walk: every Rust file says what it is for in a `//!` line,
//! no file's code (before its unit tests) runs past 500 lines, docs/metrics.md lists
//! exactly the metrics the crates declare, and every variable the docs name is one the code
//! reads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use netqoe_deploy_check::{
    binary_env_vars, declared_metrics, documented_metrics, env_names_in, repo_root,
};

/// Longest a file's code may be, not counting its `#[cfg(test)]` module at the end.
const MAX_LINES: usize = 500;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn files() -> Vec<(String, String)> {
    let root = repo_root();
    let mut paths = Vec::new();
    rust_files(&root.join("crates"), &mut paths);
    paths.sort();
    assert!(paths.len() > 50, "found only {} Rust files", paths.len());
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.strip_prefix(&root).unwrap().display().to_string(), text)
        })
        .collect()
}

#[test]
fn every_rust_file_starts_with_a_line_saying_what_it_is_for() {
    let missing: Vec<String> = files()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not start with a `//!` line saying what they are for: {missing:#?}"
    );
}

#[test]
fn no_file_outside_tests_runs_past_500_lines() {
    let long: Vec<String> = files()
        .into_iter()
        .filter(|(path, _)| !path.contains("/tests/") && !path.ends_with("/tests.rs"))
        .filter_map(|(path, text)| {
            let code = text
                .lines()
                .take_while(|l| !l.starts_with("#[cfg(test)]"))
                .count();
            (code > MAX_LINES).then(|| format!("{path}: {code} lines"))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these files (at most {MAX_LINES} lines before their unit tests): {long:#?}"
    );
}

#[test]
fn docs_metrics_lists_exactly_the_declared_metrics() {
    let documented = documented_metrics().unwrap();
    let declared = declared_metrics().unwrap();
    let undocumented: Vec<_> = declared.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&declared).collect();
    assert!(
        undocumented.is_empty(),
        "declared in a crate's metrics.rs but missing from docs/metrics.md: {undocumented:?}"
    );
    assert!(
        gone.is_empty(),
        "listed in docs/metrics.md but declared by no crate's metrics.rs: {gone:?}"
    );
}

/// Every `NETQOE_*` (and `NATS_URL`, `DATABASE_URL`) variable named in the docs is one a crate
/// reads: a clap `env = "…"`, a shared argument block, or a variable a library reads itself.
#[test]
fn every_variable_the_docs_name_is_read_by_the_code() {
    let mut read = BTreeSet::new();
    for entry in std::fs::read_dir(repo_root().join("crates")).unwrap() {
        let dir = entry.unwrap().file_name().to_string_lossy().to_string();
        let binary = dir.strip_prefix("netqoe-").unwrap_or(&dir).to_string();
        read.extend(binary_env_vars(&binary).unwrap().unwrap_or_default());
    }
    // Read with std::env::var rather than clap: a quoted literal in some crate's source.
    let sources: String = files().into_iter().map(|(_, text)| text).collect();
    let mut stale = Vec::new();
    for doc in [
        "README.md",
        "docs/operations.md",
        "docs/api.md",
        "docs/ARCHITECTURE.md",
    ] {
        let text = read_doc(doc);
        for name in env_names_in(&text) {
            // `NETQOE_<BINARY>_*` and the like name a family, not a variable.
            let family = name.ends_with('_');
            let known = read.contains(&name) || sources.contains(&format!("\"{name}\""));
            if !family && !known {
                stale.push(format!("{doc}: {name}"));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the docs name variables no crate reads (renamed or removed?): {stale:#?}"
    );
}

fn read_doc(rel: &str) -> String {
    netqoe_deploy_check::read(rel).unwrap()
}
