//! The operations suite: metrics, health, logs, the monitoring configuration, a real
//! Prometheus scraping the server and the PostgreSQL and host exporters, three replicas behind
//! a real nginx, and TLS through the shipped nginx configuration.

/// The server binary, for [`test_support::server_process::ServerProcess`] and the health probe:
/// Cargo names it only to this package's integration tests.
const MINITWIT: &str = env!("CARGO_BIN_EXE_minitwit");

mod config;
mod exporters;
mod health;
mod log_shipping;
mod logs;
mod metrics;
mod nginx;
mod prometheus;
mod scale_out;
mod tls;
