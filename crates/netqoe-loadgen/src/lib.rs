//! netqoe-loadgen: the load generator for ingest and the scenario generator for the
//! diagnoser.
//!
//! [`load`] posts valid events as fast as asked and reports throughput and latency (what the
//! vegeta and k6 scripts in `loadtest/` do); [`scenario`] generates clients × targets of
//! realistic measurements with injected incidents and their ground truth, and [`send`]
//! pushes such a stream through ingest.

pub mod commands;
pub mod config;
pub mod faults;
pub mod load;
pub mod noise;
pub mod output;
pub mod scenario;
pub mod send;

pub use load::{body, percentile, run, sample_event, scheduled, Latency, LoadConfig, Report};
pub use scenario::{Scenario, ScenarioConfig, ScenarioError, Summary};
