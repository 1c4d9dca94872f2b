//! The MiniTwit server's HTTP layer: both listeners, their routes, extractors and errors.
//!
//! A handler extracts its input, hands a command to the command side (the `commands` crate) or
//! asks a named query of the query side (`projections`), and maps the result to a response.
//! Nothing here decides a command or builds a view.
//!
//! Layout:
//! - [`config`] — the server's flags and environment variables (secrets also from `*_FILE`),
//!   with the database's settings flattened in.
//! - [`startup`] — building the application and running it until a shutdown signal, with its
//!   [`background`] tasks supervised meanwhile;
//!   [`serving`] — HTTP/1.1 connections, with deadlines and caps on request headers;
//!   [`request_limits`] — the caps on URIs and bodies, and the body's deadline.
//! - [`simulator`] — the simulator's JSON API; [`web`] — the browser pages, with sessions,
//!   live timelines and the chat.
//! - [`failure`] — what a failure below the HTTP layer means, decided once;
//!   [`error`] — the API's error type, wording it as JSON with its HTTP status.
//! - [`outage`] — the breaker's HTTP side: 503 at once while the database is unreachable.
//! - [`openapi`] — the API listener's OpenAPI description, made from the handlers that serve
//!   it, at `GET /openapi.json`.
//! - [`request_context`] — the extractor that builds a command's context from its request.
//! - [`monitoring`] — metrics; [`health`] — liveness, readiness and the container probe.
//!
//! Depends on everything below it (`domain`, `commands`, `projections`, `database`); nothing
//! depends on it but its binary and its tests.

#![forbid(unsafe_code)]

pub mod background;
pub mod config;
pub mod error;
pub mod failure;
pub mod health;
pub mod monitoring;
pub mod openapi;
pub mod outage;
pub mod request_context;
pub mod request_limits;
pub mod serving;
pub mod simulator;
pub mod startup;
pub mod web;

pub use config::Config;
pub use startup::Application;
