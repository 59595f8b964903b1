//! Format 3 of `agg_1m.sketch_state`: a window state in about 400 bytes, written in well
//! under a microsecond, without a compression pass.
//!
//! sketches-ddsketch keeps each sketch's bins dense (128 or more counters from its lowest to
//! its highest key, mostly zeros in a one-minute window) and exposes them only through serde,
//! and every sketch repeats the same configuration and an empty negative store. This format
//! stores what differs from an empty sketch and skips the zeros. The layout, after the
//! format byte that [`super::WindowState::encode`] writes:
//!
//! - `count_total`, `count_success`, the six error counts: varints;
//! - the five timing sketches, then throughput and jitter: each a [sketch](#sketches);
//! - `ping_sent`, `ping_received`: varints;
//! - `last_recv_ms`: byte 0 (none), or byte 1 and a zigzag varint.
//!
//! Integers are LEB128 varints (signed ones zigzag), `f64` 8 bytes little-endian, `bool` one
//! byte. A sketch's fields are written and read through its own `Serialize` and `Deserialize`
//! (the only way to reach them), by the narrow serde format of [`write`] and [`read`].
//!
//! # Sketches
//! A sketch (`DDSketch`), its configuration (`Config`) and each of its two bin stores
//! (`Store`) are byte 0 when they encode exactly like the ones of an empty sketch of this
//! crate's configuration, else byte 1 and their fields in declaration order: an unused sketch
//! takes one byte, and a used one spends none on the configuration or the empty negative
//! store. The bins (the only sequence) are their length, then for each non-zero bin the
//! number of zeros before it and its count, and a last run of zeros if they end with some.
//!
//! Those field lists are sketches-ddsketch's private layout: the workspace pins its exact
//! version, and `format_3_writes_the_released_bytes` fails if an upgrade moves a byte.
//!
//! Decoding checks every length against the input and fails with an [`Error`], never panics.

use std::sync::OnceLock;

use super::WindowState;

mod read;
mod write;

use read::Reader;
use write::Writer;

/// Why bytes of format 3 cannot be read (or, for a type the format has no encoding for,
/// written).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("truncated")]
    Truncated,
    #[error("varint longer than 10 bytes")]
    LongVarint,
    #[error("invalid {what} tag {tag}")]
    Tag { what: &'static str, tag: u8 },
    #[error("sequence of {0} elements")]
    LongSequence(u64),
    #[error("run of {0} zeros past the sequence's end")]
    ZerosPastEnd(u64),
    #[error("{0} bytes left over")]
    LeftOver(usize),
    #[error("the compact format has no {0}")]
    Unsupported(&'static str),
    /// What sketches-ddsketch's `Deserialize` says of the fields it was given.
    #[error("{0}")]
    Sketch(String),
}

impl serde::ser::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error::Sketch(msg.to_string())
    }
}

impl serde::de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error::Sketch(msg.to_string())
    }
}

/// Longest sequence accepted when decoding (sketches hold at most a few thousand bins).
const MAX_SEQ: u64 = 1 << 20;

/// The encodings (fields only, no tag byte) that a sketch, its configuration and its stores
/// are written as byte 0 for: those of an empty sketch.
#[derive(Default)]
struct Memo {
    config: Vec<u8>,
    store: Vec<u8>,
    /// Written with its configuration and stores as one byte each.
    sketch: Vec<u8>,
}

impl Memo {
    /// The reference encoding of sketches-ddsketch's struct `name`, if it is one memoised.
    fn of(&self, name: &str) -> Option<&[u8]> {
        let bytes = match name {
            "DDSketch" => &self.sketch,
            "Config" => &self.config,
            "Store" => &self.store,
            _ => return None,
        };
        (!bytes.is_empty()).then_some(bytes.as_slice())
    }

    /// Made once, from an empty sketch: first its parts written in full, then the sketch
    /// written with them as one byte each.
    fn get() -> &'static Memo {
        static MEMO: OnceLock<Memo> = OnceLock::new();
        MEMO.get_or_init(|| {
            let empty = super::sketch();
            let none = Memo::default();
            let (plain, spans) = Writer::record(&none, &empty);
            let span = |name: &str| {
                let (_, range) = spans.iter().find(|(n, _)| *n == name)?;
                Some(plain[range.clone()].to_vec())
            };
            let parts = Memo {
                config: span("Config").expect("a sketch has a configuration"),
                store: span("Store").expect("a sketch has a store"),
                sketch: Vec::new(),
            };
            let (sketch, _) = Writer::record(&parts, &empty);
            Memo { sketch, ..parts }
        })
    }
}

/// Appends the format 3 encoding of `state` to `out`.
pub fn encode(state: &WindowState, out: &mut Vec<u8>) -> Result<(), Error> {
    // Destructured so that a new field cannot be left out of the format unnoticed.
    let WindowState {
        count_total,
        count_success,
        errors,
        timings,
        throughput,
        jitter,
        ping_sent,
        ping_received,
        last_recv_ms,
    } = state;
    let mut w = Writer::new(out, Memo::get());
    w.varint(*count_total);
    w.varint(*count_success);
    for n in errors {
        w.varint(*n);
    }
    for s in timings.iter().chain([&**throughput, &**jitter]) {
        w.sketch(s)?;
    }
    w.varint(*ping_sent);
    w.varint(*ping_received);
    match last_recv_ms {
        None => w.byte(0),
        Some(ms) => {
            w.byte(1);
            w.zigzag(*ms);
        }
    }
    Ok(())
}

/// Decodes bytes written by [`encode`]; the whole input must be used.
pub fn decode(bytes: &[u8]) -> Result<WindowState, Error> {
    let mut r = Reader::new(bytes, Memo::get());
    let count_total = r.varint()?;
    let count_success = r.varint()?;
    let mut errors = [0u64; 6];
    for n in &mut errors {
        *n = r.varint()?;
    }
    let state = WindowState {
        count_total,
        count_success,
        errors,
        // Array elements are evaluated in order.
        timings: Box::new([
            r.sketch()?,
            r.sketch()?,
            r.sketch()?,
            r.sketch()?,
            r.sketch()?,
        ]),
        throughput: Box::new(r.sketch()?),
        jitter: Box::new(r.sketch()?),
        ping_sent: r.varint()?,
        ping_received: r.varint()?,
        last_recv_ms: match r.byte()? {
            0 => None,
            1 => Some(r.zigzag()?),
            tag => {
                return Err(Error::Tag {
                    what: "option",
                    tag,
                })
            }
        },
    };
    r.finish()?;
    Ok(state)
}
