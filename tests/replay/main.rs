//! The admin tool's integration suite: `minitwit-replay` (the real binary, or its library)
//! against a real PostgreSQL, with the real server running beside it.

// The harness is shared with the other suites; this binary uses only part of it.
#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod helpers;
mod tool;
#[allow(dead_code)]
#[path = "../support/web_client.rs"]
mod web_client;

mod batching;
mod export_import;
mod legacy;
mod moderation;
mod rebuild;
