//! Integration tests of the probe against the in-process fault-injecting lab.

mod cli;
mod outage;
mod phases;
mod series;
mod shipping;
