//! The netqoe-probe binary's start: `--once` needs no state, and a client_id that cannot end
//! a NATS subject or an ingest CA file without certificates is refused at start with a
//! configuration error.

use std::process::{Command, Output};

fn probe(args: &[&str], config: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_netqoe-probe"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env_remove("NETQOE_PROBE_CLIENT_ID")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run netqoe-probe");
    (out, dir)
}

fn tcp_target() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = format!(
        "[[targets]]\nhost = \"127.0.0.1\"\nport = {}\nkind = \"tcp\"\n",
        l.local_addr().unwrap().port()
    );
    (l, cfg)
}

#[test]
fn once_without_client_id_writes_no_state() {
    let (_listener, cfg) = tcp_target();
    let state = tempfile::tempdir().unwrap();
    // a state directory nobody may create (not even root): --once must not need it
    let unwritable = "/proc/netqoe-no-such-dir/state";
    let spool = state.path().join("spool");
    let cfg = format!("spool_dir = \"{}\"\n{cfg}", spool.display());
    let (out, _dir) = probe(&["--once", "--state-dir", unwritable], &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let ev: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert!(
        ev["client_id"].as_str().unwrap().starts_with("probe-"),
        "{ev}"
    );
    assert!(!spool.exists(), "--once creates no spool");
}

#[test]
fn client_id_with_an_empty_dot_separated_part_is_refused_at_start() {
    let (_listener, cfg) = tcp_target();
    for bad in ["a..b", ".x", "x."] {
        let (out, _dir) = probe(&["--once"], &format!("client_id = \"{bad}\"\n{cfg}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{bad}: {stderr}");
        assert!(
            stderr.contains("client_id") && stderr.contains("dot-separated part"),
            "{bad}: {stderr}"
        );
        let (out, _dir) = probe(&["--once", "--client-id", bad], &cfg);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "flag {bad}: {stderr}");
        assert!(stderr.contains("client_id"), "flag {bad}: {stderr}");
    }
}

#[test]
fn an_ingest_ca_file_without_certificates_is_refused_at_start() {
    let (_listener, cfg) = tcp_target();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for path in [&empty, &missing] {
        let (out, _dir) = probe(&["--once", "--ca-file", path.to_str().unwrap()], &cfg);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {stderr}", path.display());
        assert!(stderr.contains("--ca-file"), "{stderr}");
        let key = format!("ingest_ca_file = \"{}\"\n{cfg}", path.display());
        let (out, _dir) = probe(&["--once"], &key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{}: {stderr}", path.display());
        assert!(stderr.contains("`ingest_ca_file`"), "{stderr}");
    }
}
