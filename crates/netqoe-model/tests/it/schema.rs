//! Checks that docs/event.schema.json and the validator agree on every sample event.

use std::path::{Path, PathBuf};

use netqoe_model::validate_at;
use serde_json::Value;

fn samples(dir: &str) -> Vec<(PathBuf, Value)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/samples")
        .join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("read {}: {e}", root.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            (path, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 5, "too few samples in {}", root.display());
    out
}

fn schema() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/event.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .expect("docs/event.schema.json compiles")
}

/// The sample's own ts_ms as the clock, so that the time window (not in the schema) passes.
fn clock(v: &Value) -> i64 {
    v.get("ts_ms").and_then(Value::as_i64).unwrap_or(0)
}

#[test]
fn valid_samples_pass_schema_and_validator() {
    let schema = schema();
    for (path, v) in samples("valid") {
        let errors: Vec<String> = schema.iter_errors(&v).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{}: schema rejects: {errors:?}",
            path.display()
        );
        let result = validate_at(&v, clock(&v));
        assert!(
            result.is_ok(),
            "{}: validator rejects: {:?}",
            path.display(),
            result.err()
        );
    }
}

#[test]
fn invalid_samples_fail_schema_and_validator() {
    let schema = schema();
    for (path, v) in samples("invalid") {
        assert!(
            !schema.is_valid(&v),
            "{}: schema accepts it",
            path.display()
        );
        let errors = validate_at(&v, clock(&v))
            .expect_err(&format!("{}: validator accepts it", path.display()));
        assert!(!errors.is_empty());
    }
}

#[test]
fn normalised_events_still_match_the_schema() {
    let schema = schema();
    for (path, v) in samples("valid") {
        let event = validate_at(&v, clock(&v)).unwrap().event;
        let out = serde_json::to_value(&event).unwrap();
        assert!(
            schema.is_valid(&out),
            "{}: normalised form rejected",
            path.display()
        );
    }
}
