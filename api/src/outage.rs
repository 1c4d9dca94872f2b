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

/// What a 503 tells clients: retry in a second (a restart of PostgreSQL takes about that).
const RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("1");

/// What the API's and the pages' error types share about outages: each has a 503 and a 500,
/// and which of the two a failure is, is decided here.
pub trait OutageAware: IntoResponse + Sized {
    /// The 503. No cause when the breaker refused the request without trying the database
    /// (it logged the outage once).
    fn unavailable(cause: Option<anyhow::Error>) -> Self;

    /// The 500.
    fn internal(cause: anyhow::Error) -> Self;

    /// `cause` as the 503 if it says the database cannot be reached, else as the 500.
    fn classify(cause: anyhow::Error) -> Self {
        if is_unreachable(cause.as_ref()) {
            Self::unavailable(Some(cause))
        } else {
            Self::internal(cause)
        }
    }

    /// The 503 of a request the breaker refused without trying the database.
    fn refused_while_unreachable() -> Response {
        Self::unavailable(None).into_response()
    }
}

/// Whether `err`, or any error in its chain of causes, says the database cannot be reached:
/// the driver's errors as [`database::outage`] classifies them, and the domain's ports
/// reporting an unreachable store.
pub fn is_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    database::outage::is_unreachable(err)
        || std::iter::successors(Some(err), |err| err.source()).any(|err| {
            matches!(
                err.downcast_ref::<domain::DirectoryError>(),
                Some(domain::DirectoryError::Unreachable(_))
            )
        })
}

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
    /// What [`guard`] needs for one listener's routes: the breaker, the listener's name (for
    /// the metric) and the 503 it answers with while the breaker is open.
    pub fn new(gate: &DatabaseGate, listener: &'static str, refusal: fn() -> Response) -> Self {
        Self {
            gate: gate.clone(),
            listener,
            refusal,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_errors_count_when_they_say_unreachable() {
        let directory = domain::DirectoryError::Unreachable("down".into());
        assert!(is_unreachable(&directory));
        assert!(!is_unreachable(&domain::DirectoryError::Failed(
            "bad".into()
        )));
        let wrapped = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("reading a timeline");
        assert!(is_unreachable(wrapped.as_ref()));
    }
}
