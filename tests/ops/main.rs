//! The operations suite: metrics, health, logs, the monitoring configuration, a real
//! Prometheus scraping the server, and three replicas behind a real nginx.

// The harness is shared with the other suites; this binary uses only part of it.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "../support/server_process.rs"]
mod server_process;

mod config;
mod health;
mod logs;
mod metrics;
mod prometheus;
mod scale_out;
