//! The MiniTwit server: configuration, start-up, the simulator API and the browser pages.
//!
//! Layout:
//! - [`config`] — flags and environment variables (secrets also from `*_FILE`).
//! - [`database`] — reaching PostgreSQL — a URL or the [`embedded_postgres`] cluster — and
//!   applying the migrations.
//! - [`commands`] — executing commands through cqrs-es, retrying conflicts, and waiting until
//!   the views include each write (read your writes).
//! - [`directory`] — the domain's user-directory port, answered from the event store.
//! - [`passwords`] — argon2id hashing and verification (also of werkzeug's legacy hashes)
//!   off the runtime, with bounded concurrency.
//! - [`users`] — registering and signing in, shared by both front doors.
//! - [`simulator`] — the simulator's JSON API.
//! - [`web`] — the browser pages, with sessions and live timelines.
//! - [`error`] — the API's error type and its one mapping to HTTP statuses.
//! - [`outage`] — which database errors mean an outage (503, not 500), and the breaker that
//!   answers 503 at once while one lasts.
//! - [`openapi`] — the API listener's OpenAPI description, made from the handlers that serve
//!   it, at `GET /openapi.json`.
//! - [`request_context`] — request ids and times, carried into event metadata.
//! - [`startup`] — building the application and running it until a shutdown signal.
//! - [`serving`] — HTTP/1.1 connections, with deadlines and caps on request headers;
//!   [`request_limits`] — the caps on URIs and bodies, and the body's deadline.
//! - [`telemetry`] — logging; [`monitoring`] — metrics; [`health`] — liveness, readiness and
//!   the container probe.

#![forbid(unsafe_code)]

pub mod commands;
pub mod config;
pub mod database;
pub mod directory;
pub mod embedded_postgres;
pub mod error;
pub mod health;
pub mod monitoring;
pub mod openapi;
pub mod outage;
pub mod passwords;
pub mod request_context;
pub mod request_limits;
pub mod serving;
pub mod simulator;
pub mod startup;
pub mod telemetry;
pub mod users;
pub mod web;

pub use config::Config;
pub use startup::{shutdown_signal, Application};
