//! The infrastructure under both sides of the service and both binaries: where PostgreSQL is,
//! reaching it, telling an outage from a failure, and the event log's SQL, which both sides
//! and the admin tool share.
//!
//! Layout:
//! - [`settings`] — the database settings, one clap group that the server and the admin tool
//!   flatten (secrets also from `*_FILE`).
//! - [`mod@connect`] — a pool on a configured URL or the [`embedded_postgres`] cluster, with the
//!   migrations applied.
//! - [`roles`] — the owner and the server role of a deployment that separates them.
//! - [`embedded_postgres`] — the private cluster run from the machine's PostgreSQL binaries.
//! - [`event_log`] — every statement on the `events` table, and the positions and rows they
//!   return: the one place that knows how the log is read (and why in that order).
//! - [`sealing`] and [`keyring`] — crypto-shredding: personal fields of events sealed with
//!   their owner's data key, the keys wrapped with the master key and kept in their own table.
//! - [`outage`] — whether an error means the database cannot be reached, and the breaker
//!   that remembers that it cannot.
//! - [`web_sessions`] — whose browser sessions are whose, to end a user's sessions.
//! - [`telemetry`] and [`shutdown`] — the process plumbing every binary over the database
//!   shares: logging set-up and the graceful-stop signal.
//!
//! May depend on no other crate of the workspace: everything else stands on it.

#![forbid(unsafe_code)]

pub mod connect;
pub mod embedded_postgres;
pub mod event_log;
pub mod keyring;
pub mod outage;
pub mod roles;
pub mod sealing;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod web_sessions;

pub use connect::{connect, Database, Purpose};
pub use keyring::Keyring;
pub use settings::DatabaseConfig;
