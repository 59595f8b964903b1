//! Integration tests of netqoe-ingest against a real nats-server.

mod api;
mod contract;
mod failover;
mod hardening;
mod hostile;
mod lifecycle;
mod limits;
mod support;
