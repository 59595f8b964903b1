//! docs/openapi.yaml kept true: schemathesis runs against a live ingest.

use std::path::Path;
use std::process::Command;

use crate::support::Ingest;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_5xx_and_no_schema_mismatch() {
    let check = Command::new("python3")
        .args(["-c", "import schemathesis"])
        .output();
    assert!(
        check.is_ok_and(|o| o.status.success()),
        "schemathesis is not installed: run `make setup` (pip install schemathesis)"
    );
    let ingest = Ingest::start().await;
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.yaml");
    let base = ingest.base.clone();
    // hypothesis keeps caches in .hypothesis/ of the working directory: not in the source tree
    let storage = tempfile::tempdir().expect("temp dir");
    let storage_path = storage.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-m", "schemathesis.cli", "run"])
            .arg(&spec)
            .args(["--base-url", &base])
            .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"])
            .args(["--hypothesis-max-examples", "40", "--hypothesis-derandomize", "--hypothesis-deadline", "5000"])
            .args(["-H", "Authorization: Bearer token-any-0123456789"])
            .env("SCHEMATHESIS_TELEMETRY", "false")
            .env("HYPOTHESIS_STORAGE_DIRECTORY", &storage_path)
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    ingest.stop().await;
}
