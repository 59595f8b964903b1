//! Integration tests of the deployment files, one module per kind of file.

mod docker;
mod grafana;
mod k8s;
mod prometheus;
mod systemd;
mod tidy;
