//! The workspace stays easy to walk: every Rust file says what it is for in a `//!` line,
//! no file's code (before its unit tests) runs past 500 lines, and docs/metrics.md lists
//! exactly the metrics the crates declare.

use std::path::{Path, PathBuf};

use netqoe_deploy_check::{declared_metrics, documented_metrics, repo_root};

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
