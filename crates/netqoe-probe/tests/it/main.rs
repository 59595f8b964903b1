//! Integration tests of the probe against the in-process fault-injecting lab.

mod outage;
mod phases;
mod shipping;
