//! Integration tests of netqoe-aggregator against real nats-server and PostgreSQL.

mod dlq;
mod exact;
mod faults;
mod ledger;
mod migrate;
mod quarantine;
mod series;
mod support;
