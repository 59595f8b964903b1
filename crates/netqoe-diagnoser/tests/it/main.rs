//! Integration tests of netqoe-diagnoser against a real PostgreSQL, with agg_1m rows written
//! directly.

mod cli;
mod run;
mod support;
