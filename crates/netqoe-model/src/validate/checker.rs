//! The validator's primitives: collecting errors and warnings, and reading a JSON value as
//! a string, integer, number or object of the shape a field needs.

use serde_json::{Map, Value};

use super::FieldError;

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn path(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

#[derive(Default)]
pub(super) struct Checker {
    pub(super) errors: Vec<FieldError>,
    /// The first [`MAX_WARNINGS`](super::MAX_WARNINGS) warnings.
    pub(super) warnings: Vec<String>,
    /// Warnings past those, counted but not written out.
    pub(super) more_warnings: usize,
}

impl Checker {
    pub(super) fn fail(&mut self, field: impl Into<String>, problem: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            problem: problem.into(),
        });
    }

    pub(super) fn unknown_fields(
        &mut self,
        obj: &Map<String, Value>,
        prefix: &str,
        known: &[&str],
    ) {
        for key in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            if self.warnings.len() < super::MAX_WARNINGS {
                self.warnings
                    .push(format!("unknown field `{}` ignored", path(prefix, key)));
            } else {
                self.more_warnings += 1;
            }
        }
    }

    /// The value of an optional field; JSON `null` counts as absent.
    pub(super) fn opt<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
        obj.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn required<'a>(
        &mut self,
        obj: &'a Map<String, Value>,
        key: &str,
    ) -> Option<&'a Value> {
        let v = Self::opt(obj, key);
        if v.is_none() {
            self.fail(key, "is required");
        }
        v
    }

    pub(super) fn string<'a>(&mut self, field: &str, v: &'a Value) -> Option<&'a str> {
        let s = v.as_str();
        if s.is_none() {
            self.fail(field, format!("must be a string, got {}", kind(v)));
        }
        s
    }

    pub(super) fn string_len<'a>(
        &mut self,
        field: &str,
        v: &'a Value,
        max: usize,
    ) -> Option<&'a str> {
        let s = self.string(field, v)?;
        let n = s.chars().count();
        if n == 0 || n > max {
            self.fail(field, format!("must be 1 to {max} characters, got {n}"));
            return None;
        }
        Some(s)
    }

    pub(super) fn integer(&mut self, field: &str, v: &Value, min: i64, max: i64) -> Option<i64> {
        let Some(n) = v.as_i64() else {
            let problem = match v {
                Value::Number(n) if n.is_u64() => format!("must be at most {max}"),
                Value::Number(_) => "must be an integer, not a fraction".to_string(),
                other => format!("must be an integer, got {}", kind(other)),
            };
            self.fail(field, problem);
            return None;
        };
        if n < min || n > max {
            self.fail(field, format!("must be between {min} and {max}, got {n}"));
            return None;
        }
        Some(n)
    }

    pub(super) fn number(&mut self, field: &str, v: &Value, max: f64) -> Option<f64> {
        let Some(x) = v.as_f64() else {
            self.fail(field, format!("must be a number, got {}", kind(v)));
            return None;
        };
        if !x.is_finite() || x < 0.0 || x > max {
            self.fail(
                field,
                format!("must be a finite number from 0 to {max}, got {x}"),
            );
            return None;
        }
        Some(x)
    }

    pub(super) fn object<'a>(
        &mut self,
        field: &str,
        v: &'a Value,
    ) -> Option<&'a Map<String, Value>> {
        let o = v.as_object();
        if o.is_none() {
            self.fail(field, format!("must be an object, got {}", kind(v)));
        }
        o
    }
}
