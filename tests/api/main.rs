//! The integration suite: the real server against a real PostgreSQL.
//!
//! One binary for every module, so it links once. See [`helpers`] for the harness.

mod helpers;
mod simulator_api;
