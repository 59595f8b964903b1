//! Format 3 of `agg_1m.sketch_state`: a compact serde format that writes a window state in
//! about 400 bytes, in well under a microsecond, without a compression pass.
//!
//! sketches-ddsketch keeps each sketch's bins dense (128 or more counters from its lowest to
//! its highest key, mostly zeros in a one-minute window) and exposes them only through serde,
//! and every sketch repeats the same configuration and an empty negative store. Plain
//! postcard therefore writes ~1.3 KB per state and needed LZ4 after it; walking those bytes
//! twice was most of the cost of a row in the aggregator. This format, driven by the types'
//! own `Serialize`/`Deserialize`:
//! - integers as LEB128 varints (signed ones zigzag), `f64` as 8 bytes little-endian, `bool`
//!   and the `Option` tag as one byte, structs and tuples as their fields in order;
//! - a sequence (the bins) as its length, then for each non-zero element the number of zeros
//!   before it and the element, and a last run of zeros if it ends with some;
//! - a struct named `DDSketch`, `Config` or `Store` (sketches-ddsketch's sketch, its
//!   configuration and its bin store) as one byte 0 when it equals the one of an empty sketch
//!   of this crate's configuration, else 1 and its fields: an unused sketch takes one byte,
//!   and a used one spends none on the configuration or the empty negative store.
//!
//! Decoding checks every length against the input and fails with a message, never panics.

use std::sync::OnceLock;

use serde::de;
use serde::ser::{self, Serialize};

mod read;
mod write;

use read::Reader;
use write::Writer;

/// Names of the structs written as one byte when equal to an empty sketch's: the sketch's
/// parts first, then the sketch (whose reference is written with its parts as one byte).
const MEMO_PARTS: [&str; 2] = ["Config", "Store"];
const MEMO_SKETCH: &str = "DDSketch";
/// Longest sequence accepted when decoding (sketches hold at most a few thousand bins).
const MAX_SEQ: u64 = 1 << 20;

#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

type Result<T> = std::result::Result<T, Error>;

fn unsupported<T>(what: &str) -> Result<T> {
    Err(Error(format!("the compact format has no {what}")))
}

/// Reference encodings of memo structs, by name.
type Table = Vec<(&'static str, Vec<u8>)>;

fn lookup<'t>(table: &'t Table, name: &str) -> Option<&'t [u8]> {
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| b.as_slice())
}

/// The encodings of an empty sketch's `Config` and `Store`, and of the sketch itself written
/// with them as one byte each; made once.
fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let record = |table: &Table, names: &[&'static str]| -> Table {
            let mut w = Writer {
                out: Vec::new(),
                table,
                recorded: Some(Vec::new()),
            };
            super::sketch()
                .serialize(&mut w)
                .expect("an empty sketch serialises");
            let recorded = w.recorded.take().unwrap_or_default();
            names
                .iter()
                .filter_map(|n| {
                    let (_, start, end) = recorded.iter().find(|(r, _, _)| r == n)?;
                    Some((*n, w.out[*start..*end].to_vec()))
                })
                .collect()
        };
        let mut table = record(&Vec::new(), &MEMO_PARTS);
        let sketch = record(&table, &[MEMO_SKETCH]);
        table.extend(sketch);
        table
    })
}

/// Appends the compact encoding of `value` to `out`.
pub fn to_writer<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let mut w = Writer {
        out: std::mem::take(out),
        table: table(),
        recorded: None,
    };
    let result = value.serialize(&mut w);
    *out = w.out;
    result
}

/// Decodes a value written by [`to_writer`]; the whole input must be used.
pub fn from_bytes<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T> {
    let mut r = Reader {
        input: bytes,
        table: table(),
    };
    let value = T::deserialize(&mut r)?;
    if !r.input.is_empty() {
        return Err(Error(format!("{} bytes left over", r.input.len())));
    }
    Ok(value)
}
