//! Integration tests of the probe against the in-process fault-injecting lab.

mod phases;
mod shipping;
