//! Whole-pipeline and soak tests: probe → ingest → JetStream → aggregator → `agg_1m`, every
//! part the released binary with its defaults.

mod faults;
mod faults_postgres;
mod observability;
mod pipeline;
mod scenario;
mod security;
mod soak;
