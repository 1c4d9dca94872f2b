//! The integration suite: the real server against a real PostgreSQL.
//!
//! One binary for these modules, so it links once; their tests run in parallel, each on its
//! own database. The timing-sensitive simulator replay is a separate binary (`tests/simulator`),
//! which Cargo runs after this one: some tests here hold transactions open on purpose, and the
//! transaction horizon is shared by every database of the test cluster.

/// The server binary, for [`test_support::server_process::ServerProcess`]: Cargo names it only
/// to this package's integration tests.
const MINITWIT: &str = env!("CARGO_BIN_EXE_minitwit");

mod concurrency;
mod crash_restart;
mod database_outage;
mod event_store;
mod hand_over;
mod least_privilege;
mod limits;
mod master_key;
mod openapi;
mod openapi_fuzz;
mod projection_ordering;
mod read_models;
mod replicas;
mod simulator_api;
mod sql_metacharacters;
mod supervision;
mod version_switch;
