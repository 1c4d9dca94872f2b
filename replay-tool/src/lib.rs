//! `minitwit-replay`, the administrators' tool: it owns the event log's upkeep while the
//! servers keep running on the same database.
//!
//! Layout:
//! - [`cli`] — the commands, their options, and what each prints and exits with.
//! - [`admin`] — reaching the server's database (the same settings and embedded cluster).
//! - [`status`] — versions, checkpoints and lag of each projection; the log's size and head.
//! - [`rebuild`] — blue/green rebuilds with progress, and [`verify`] — views against the log.
//! - [`export`] — the whole log as JSON lines, and back; [`backup`] — exports into a folder,
//!   on a schedule, the newest kept; [`keys`] — the data keys' backups, apart from the log's.
//! - [`moderation`] — listing, flagging and unflagging messages, through commands.
//! - [`people`] — people's data: forgetting a person, auditing what the log holds of them,
//!   sealing personal fields older builds stored in plain text; [`as_of`] — a timeline as it
//!   stood at a point in the log.
//! - [`legacy`] — turning an original ITU-MiniTwit SQLite database into events.
//! - [`report`] — progress on a terminal (a bar) or elsewhere (plain lines);
//!   [`terminal`] — printing untrusted text safely.
//!
//! Stands on the command side (`commands`), the query side (`projections`), `domain` and
//! `database`, as the server does — and, unlike the server, on no HTTP crate and not on
//! `api` (`.ci/run` checks this), so an administrator's tool carries no web stack.

#![forbid(unsafe_code)]

pub mod admin;
pub mod as_of;
pub mod backup;
pub mod cli;
pub mod export;
pub mod keys;
pub mod legacy;
pub mod moderation;
pub mod people;
pub mod rebuild;
pub mod report;
pub mod status;
pub mod terminal;
pub mod verify;
