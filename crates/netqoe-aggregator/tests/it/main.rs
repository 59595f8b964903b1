//! Integration tests of netqoe-aggregator against real nats-server and PostgreSQL.

mod dlq;
mod exact;
mod faults;
mod migrate;
mod series;
mod support;
