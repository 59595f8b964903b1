//! Integration tests of the event model: property tests and the JSON Schema agreement check.

mod properties;
mod schema;
