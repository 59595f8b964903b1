//! `make demo` and `make demo-down`: the whole product on a local stack under a demo home
//! (`./.netqoe` by default), driven step by step with progress, and stopped by pid.
//!
//! `up` starts nats-server and PostgreSQL (from the test support, on demo ports that never
//! clash with services on 4222/5432), migrates, starts ingest, the aggregator, the lab and two
//! live probes as processes of their own, gives the live series hours of history copied from
//! real measurements of the healthy lab, sends a scenario with injected incidents through
//! ingest, switches a lab fault on, runs the diagnoser (run, evaluate, report) and prints a
//! summary; the stack stays up. Every started process is recorded in `state.json` with its
//! start time, so `down` stops exactly those processes and nothing else.

pub mod backfill;
pub mod config;
pub mod down;
pub mod files;
pub mod live;
pub mod progress;
pub mod stack;
pub mod state;
pub mod summary;
pub mod up;
