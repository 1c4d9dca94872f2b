//! The integration suite: the real server against a real PostgreSQL.
//!
//! One binary for every module, so it links once. See [`helpers`] for the harness.

mod concurrency;
mod crash_restart;
mod helpers;
mod projection_ordering;
mod replicas;
mod simulator_api;
