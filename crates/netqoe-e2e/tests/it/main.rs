//! Whole-pipeline and soak tests: probe → ingest → JetStream → aggregator → `agg_1m`, every
//! part the released binary with its defaults.

mod pipeline;
mod soak;
