//! Tests of the deployment files (deploy/, nats/): helpers that read what the code and the
//! docs declare — every binary's environment variables, every documented metric — so the
//! integration tests in `tests/it` can hold the systemd units, Kubernetes manifests, Docker
//! files, Prometheus rules and Grafana dashboards to them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// The binaries an operator deploys, as named on disk and in `NETQOE_<BINARY>_*`.
pub const BINARIES: [&str; 4] = ["ingest", "aggregator", "probe", "diagnoser"];

/// Variables read by libraries rather than by a clap flag, allowed in deployment files.
pub const LIBRARY_VARS: [&str; 3] = ["RUST_LOG", "MIMALLOC_PURGE_DELAY", "MIMALLOC_ALLOW_THP"];

/// The workspace root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crate sits in crates/")
        .to_path_buf()
}

/// Reads a file of the repository, with its path in the error.
pub fn read(rel: impl AsRef<Path>) -> Result<String> {
    let path = repo_root().join(rel.as_ref());
    std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))?
    {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// The quoted values of `env = "…"` in a source text (clap's `#[arg(env = …)]`).
pub fn clap_env_names(src: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = src;
    while let Some(i) = rest.find("env = \"") {
        rest = &rest[i + 7..];
        if let Some(end) = rest.find('"') {
            names.insert(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    names
}

/// The environment variables of `netqoe-<binary>`: its own clap flags, plus those of the
/// shared argument blocks of `netqoe-common` it flattens and of the provisioning block of
/// `netqoe-nats` it declares, plus `RUST_LOG` when it logs.
/// `None` when the binary's crate does not exist (yet).
pub fn binary_env_vars(binary: &str) -> Result<Option<BTreeSet<String>>> {
    let root = repo_root();
    let src_dir = root.join(format!("crates/netqoe-{binary}/src"));
    if !src_dir.is_dir() {
        return Ok(None);
    }
    let mut files = Vec::new();
    rust_files(&src_dir, &mut files)?;
    let mut src = String::new();
    for f in files {
        src.push_str(
            &std::fs::read_to_string(&f)
                .with_context(|| format!("failed to read {}", f.display()))?,
        );
    }
    let mut vars = clap_env_names(&src);
    let common = read("crates/netqoe-common/src/args.rs")?;
    for block in ["LogArgs", "NatsArgs", "DbArgs"] {
        if src.contains(block) {
            vars.extend(struct_env_names(&common, block)?);
        }
    }
    vars.extend(provision_env_names(&src)?);
    if vars.contains("NETQOE_LOG_FORMAT") {
        vars.insert("RUST_LOG".into());
    }
    Ok(Some(vars))
}

/// The `env = "…"` names inside `pub struct <name> { … }` of a source text.
fn struct_env_names(src: &str, name: &str) -> Result<BTreeSet<String>> {
    let start = src
        .find(&format!("pub struct {name} {{"))
        .with_context(|| format!("struct {name} not found in netqoe-common"))?;
    let body = &src[start..];
    let end = body.find("\n}").context("unterminated struct")?;
    Ok(clap_env_names(&body[..end]))
}

/// The variables of the stream-provisioning flags when a source text declares them with
/// `netqoe_nats::provision_args! { … env_prefix = "NETQOE_X_" }`: the prefix followed by
/// each `concat!($prefix, "…")` of the macro in `netqoe-nats`.
fn provision_env_names(src: &str) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let Some(at) = src.find("provision_args!") else {
        return Ok(names);
    };
    let prefix = src[at..]
        .split_once("env_prefix = \"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(prefix, _)| prefix)
        .context("provision_args! without env_prefix = \"…\"")?;
    let block = read("crates/netqoe-nats/src/args.rs")?;
    let needle = "concat!($prefix, \"";
    let mut rest = block.as_str();
    while let Some(i) = rest.find(needle) {
        rest = &rest[i + needle.len()..];
        if let Some(end) = rest.find('"') {
            names.insert(format!("{prefix}{}", &rest[..end]));
            rest = &rest[end..];
        }
    }
    if names.is_empty() {
        bail!("no concat!($prefix, \"…\") in crates/netqoe-nats/src/args.rs");
    }
    Ok(names)
}

/// Every environment variable any deployed binary reads, by binary.
pub fn all_env_vars() -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut all = BTreeMap::new();
    for b in BINARIES {
        if let Some(vars) = binary_env_vars(b)? {
            all.insert(b.to_string(), vars);
        }
    }
    Ok(all)
}

/// Names that look like netqoe settings in a text: `NETQOE_*`, `NATS_URL`, `DATABASE_URL`,
/// `RUST_LOG`, `MIMALLOC_*` (upper-case words of letters, digits and `_`).
pub fn env_names_in(text: &str) -> BTreeSet<String> {
    words(text, |c| {
        c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
    })
    .filter(|w| {
        w.starts_with("NETQOE_")
            || w.starts_with("MIMALLOC_")
            || ["NATS_URL", "DATABASE_URL", "RUST_LOG"].contains(w)
    })
    .map(str::to_string)
    .collect()
}

fn words(text: &str, part: impl Fn(char) -> bool + Copy) -> impl Iterator<Item = &str> {
    text.split(move |c: char| !part(c))
        .filter(|w| !w.is_empty())
}

/// Metric names listed in docs/metrics.md (backquoted `netqoe_…` in its tables).
pub fn documented_metrics() -> Result<BTreeSet<String>> {
    let doc = read("docs/metrics.md")?;
    let names: BTreeSet<String> = doc
        .lines()
        .filter(|l| l.starts_with("| `netqoe_"))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        bail!("docs/metrics.md lists no metric");
    }
    Ok(names)
}

/// Metric names declared in the code: the `netqoe_…` string literals of every crate's
/// `metrics.rs` (where each crate declares its metrics once).
pub fn declared_metrics() -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let crates = repo_root().join("crates");
    for entry in std::fs::read_dir(&crates)? {
        let path = entry?.path().join("src/metrics.rs");
        if path.is_file() {
            let src = std::fs::read_to_string(&path)?;
            names.extend(
                src.split('"')
                    .skip(1)
                    .step_by(2)
                    .filter(|s| s.starts_with("netqoe_"))
                    .map(str::to_string),
            );
        }
    }
    Ok(names)
}

/// The `netqoe_…` metric names a text uses (words of lower-case letters, digits and `_`).
pub fn metric_names_in(text: &str) -> BTreeSet<String> {
    words(text, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
    })
    .filter(|w| w.starts_with("netqoe_"))
    .map(str::to_string)
    .collect()
}

/// Whether `name` is a documented metric or one of the series Prometheus derives from a
/// documented histogram (`_bucket`, `_sum`, `_count`).
pub fn is_documented(name: &str, documented: &BTreeSet<String>) -> bool {
    documented.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| documented.contains(base))
        })
}

/// Fails unless every metric in `used` is documented in docs/metrics.md and declared in a
/// crate's metrics.rs (or is a series derived from such a histogram); `what` names the files
/// that use them, for the message.
pub fn ensure_metrics_exist(what: &str, used: &BTreeSet<String>) -> Result<()> {
    for (known, place) in [
        (documented_metrics()?, "missing from docs/metrics.md"),
        (declared_metrics()?, "no crate declares"),
    ] {
        let unknown: BTreeSet<_> = used.iter().filter(|m| !is_documented(m, &known)).collect();
        if !unknown.is_empty() {
            bail!("{what} name metrics {place}: {unknown:?}");
        }
    }
    Ok(())
}

/// Parses a YAML stream (one or more documents) into JSON values, with Python's PyYAML
/// (installed with kubernetes-validate by `make setup`).
pub fn yaml_documents(yaml: &str) -> Result<Vec<serde_json::Value>> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("failed to run python3")?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(yaml.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "YAML parse failed (PyYAML missing? `make setup`): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Runs a command to completion; fails naming `make setup` when the tool is missing.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.output()
        .with_context(|| format!("failed to run {program} (missing? `make setup` installs it)"))
}

/// Runs a command and fails with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Result<Output> {
    let out = run(cmd)?;
    if !out.status.success() {
        bail!(
            "{:?} failed ({}):\n{}\n{}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_settings_and_metrics_in_text() {
        let env = env_names_in("NATS_URL=x\n#NETQOE_INGEST_RATE=200 # see RATE\nFOO=1 RUST_LOG");
        assert_eq!(
            env.into_iter().collect::<Vec<_>>(),
            ["NATS_URL", "NETQOE_INGEST_RATE", "RUST_LOG"]
        );
        let m = metric_names_in("rate(netqoe_ingest_requests_total{status=\"5xx\"}[5m]) > 0");
        assert_eq!(
            m.into_iter().collect::<Vec<_>>(),
            ["netqoe_ingest_requests_total"]
        );
        assert_eq!(
            clap_env_names("#[arg(long, env = \"A_B\", default_value = \"x\")]")
                .into_iter()
                .collect::<Vec<_>>(),
            ["A_B"]
        );
    }

    #[test]
    fn histogram_series_count_as_documented() {
        let docs: BTreeSet<String> = ["netqoe_x_seconds".to_string()].into();
        assert!(is_documented("netqoe_x_seconds_bucket", &docs));
        assert!(is_documented("netqoe_x_seconds", &docs));
        assert!(!is_documented("netqoe_y_seconds_bucket", &docs));
    }

    #[test]
    fn every_running_binary_declares_its_shared_settings() {
        let ingest = binary_env_vars("ingest").unwrap().unwrap();
        assert!(ingest.contains("NATS_URL") && ingest.contains("NETQOE_INGEST_LISTEN"));
        assert!(
            !ingest.contains("DATABASE_URL"),
            "ingest never touches Postgres"
        );
        let agg = binary_env_vars("aggregator").unwrap().unwrap();
        assert!(agg.contains("DATABASE_URL") && agg.contains("RUST_LOG"));
        for (vars, binary) in [(&ingest, "INGEST"), (&agg, "AGGREGATOR")] {
            for flag in ["NO_PROVISION", "STREAM_REPLICAS", "STREAM_DUPLICATE_WINDOW"] {
                let name = format!("NETQOE_{binary}_{flag}");
                assert!(vars.contains(&name), "{name} missing");
            }
        }
    }
}
