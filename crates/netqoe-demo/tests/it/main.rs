//! `netqoe-demo up` and `down` as a person runs them, on a small scenario in a temporary home.

mod updown;
