//! Integration tests of netqoe-loadgen: the load mode against a counting HTTP server, the
//! scenario through a real ingest and nats-server.

mod load;
mod scenario;
