//! The command side: where a command is executed and its events are appended.
//!
//! Layout:
//! - [`bus`] — the [`CommandBus`]: cqrs-es on our store, conflict retries, and waiting until
//!   the views include each write (read your writes); its settings and [`CommandError`].
//! - [`store`] — cqrs-es's event store on the `events` table: aggregates cached between
//!   commands and brought up to date by sequence, and each command appended in one statement.
//! - [`context`] — the [`CommandContext`] of a command (request id, arrival time), written
//!   into its events' metadata; it knows nothing of the transport that brought it.
//! - [`directory`] — the domain's user-directory and contact-book ports, answered from the
//!   event store.
//! - [`accounts`] — registering, signing in and changing an account, shared by every front
//!   door; [`forgetting`] — forgetting a person, for a deleted account and the admin tool;
//!   [`passwords`] — argon2id hashing and verification (also of werkzeug's legacy hashes) off
//!   the runtime, with bounded concurrency, and upgrades of outdated hashes.
//!
//! Depends on `domain`, on `database`, and on `projections` only to wait for the views and to
//! read an account at sign-in. May not depend on any HTTP crate (axum, hyper, tower) or on
//! `api`: the HTTP layer and the admin tool both drive commands through here.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod bus;
pub mod context;
pub mod directory;
pub mod forgetting;
pub mod passwords;
pub mod store;

pub use bus::{CommandBus, CommandError, CommandSettings};
pub use context::{CommandContext, Latest};
