//! The breaker's HTTP side: while the database is unreachable (see [`database::outage`]), the
//! routes behind [`guard`] answer 503 with `Retry-After` at once, and a response that failed
//! because the database was unreachable trips the breaker.
//!
//! Both error types (the API's JSON and the pages' HTML) carry an [`Unreachable`] marker on
//! such a 503, which is how [`guard`] sees it; which failures are outages is decided once, in
//! [`crate::failure`].

use axum::extract::{Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use database::outage::DatabaseGate;

use crate::failure::Failure;

/// What a 503 tells clients: retry in a second (a restart of PostgreSQL takes about that).
const RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("1");

/// Marks a response that failed because the database was unreachable, so that [`guard`]
/// opens the breaker. Set by the 503 of the API's and the pages' error types.
#[derive(Debug, Clone, Copy)]
pub struct Unreachable;

/// Adds what every 503 of an outage carries: `Retry-After`, and the [`Unreachable`] marker.
pub fn mark_unavailable(response: &mut Response) {
    response
        .headers_mut()
        .insert(RETRY_AFTER, RETRY_AFTER_SECONDS);
    response.extensions_mut().insert(Unreachable);
}

/// The state of [`guard`] on one listener's routes.
#[derive(Clone)]
pub struct Guard {
    gate: DatabaseGate,
    listener: &'static str,
    /// The listener's own 503 (JSON for the API, a page for browsers), marked by
    /// [`mark_unavailable`].
    refusal: fn() -> Response,
}

impl Guard {
    /// What [`guard`] needs for one listener's routes: the breaker, and the listener's name
    /// (for the metric). While the breaker is open the routes answer with `E`'s wording of
    /// an outage.
    pub fn new<E>(gate: &DatabaseGate, listener: &'static str) -> Self
    where
        E: From<Failure> + IntoResponse,
    {
        Self {
            gate: gate.clone(),
            listener,
            refusal: || E::from(Failure::Unavailable(None)).into_response(),
        }
    }
}

/// Middleware for routes that need the database: refuses at once while the breaker is open,
/// and opens it when a response says the database was unreachable.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let response = if guard.gate.is_open() {
        (guard.refusal)()
    } else {
        next.run(request).await
    };
    if response.extensions().get::<Unreachable>().is_some() {
        metrics::counter!("minitwit_unavailable_responses_total", "listener" => guard.listener)
            .increment(1);
        guard.gate.trip();
    }
    response
}
