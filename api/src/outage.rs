//! Database outages: which errors mean "PostgreSQL cannot be reached right now", and a
//! circuit breaker that answers 503 at once while that lasts.
//!
//! - [`is_unreachable`] (and [`is_unreachable_sqlx`]) is the one classification. An outage is
//!   the client's to wait out — a 503 with `Retry-After` — while anything else the database
//!   says stays a 500, since retrying will not cure a bug.
//! - [`DatabaseGate`] is the breaker. The first request that fails because the database is
//!   unreachable opens it (its response carries the [`Unreachable`] marker, which [`guard`]
//!   sees); while it is open, the routes behind [`guard`] answer 503 without touching the
//!   pool, and one background probe tries a fresh connection every [`PROBE_INTERVAL`]. The
//!   first probe that connects closes it.
//!
//! Why a breaker rather than only a short pool acquire timeout: sqlx retries a refused
//! connection — and PostgreSQL's "the database system is starting up" during recovery —
//! until the acquire deadline, so without the breaker every request of an outage would wait
//! out that deadline. A deadline short enough for the simulator's 0.3 s would also turn a
//! pool that is merely busy under load into 503s. With the breaker only the requests that
//! meet the outage first pay for it; the deadline can stay comfortable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::RETRY_AFTER;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sqlx::{Connection, PgConnection, PgPool};

/// How often the breaker tries to connect while the database is unreachable: also the
/// longest the service stays refusing after the database is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long one probe may take to connect. A database that needs longer is not back yet.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// What a 503 tells clients: retry in a second (a restart of PostgreSQL takes about that).
const RETRY_AFTER_SECONDS: HeaderValue = HeaderValue::from_static("1");

/// Whether `err`, or any error in its chain of causes, says the database cannot be reached.
pub fn is_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |err| err.source()).any(|err| {
        err.downcast_ref::<sqlx::Error>()
            .is_some_and(is_unreachable_sqlx)
            || matches!(
                err.downcast_ref::<domain::DirectoryError>(),
                Some(domain::DirectoryError::Unreachable(_))
            )
    })
}

/// Whether the driver's `err` says the database cannot be reached (rather than that the
/// statement or the data was wrong).
pub fn is_unreachable_sqlx(err: &sqlx::Error) -> bool {
    match err {
        // The connection failed or broke: refused, reset, closed mid-answer, or no
        // connection became free before the pool's deadline (the database not answering, or
        // so overloaded that waiting is all a request could do).
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_unreachable_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATEs of a server that cannot serve at the moment: class 08 (connection exception),
/// 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or
/// shutting down) and 53300 too_many_connections.
fn is_unreachable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

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

/// The breaker: open while the database is known to be unreachable. Cheap to clone.
#[derive(Clone)]
pub struct DatabaseGate {
    inner: Arc<GateInner>,
}

struct GateInner {
    /// Probes connect with this pool's settings (and stop once it is closed at shutdown).
    pool: PgPool,
    open: AtomicBool,
}

impl DatabaseGate {
    /// A closed breaker for the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        metrics::gauge!("minitwit_database_unreachable").set(0.0);
        Self {
            inner: Arc::new(GateInner {
                pool,
                open: AtomicBool::new(false),
            }),
        }
    }

    /// Whether requests are being refused.
    pub fn is_open(&self) -> bool {
        self.inner.open.load(Ordering::Acquire)
    }

    /// Opens the breaker, if it is closed, and starts probing for the database's return.
    pub fn trip(&self) {
        if self
            .inner
            .open
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!("the database cannot be reached; answering 503 until it can");
            metrics::gauge!("minitwit_database_unreachable").set(1.0);
            tokio::spawn(self.clone().probe_until_reachable());
        }
    }

    async fn probe_until_reachable(self) {
        let since = Instant::now();
        loop {
            if self.inner.pool.is_closed() {
                return; // shutting down: nothing will be served any more
            }
            match self.probe().await {
                Ok(()) => break,
                Err(err) => {
                    tracing::debug!(
                        error = format!("{err:#}"),
                        "the database is still unreachable"
                    );
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
            }
        }
        self.inner.open.store(false, Ordering::Release);
        metrics::gauge!("minitwit_database_unreachable").set(0.0);
        tracing::warn!(
            after_ms = since.elapsed().as_millis(),
            "the database is reachable again; serving"
        );
    }

    /// One connection attempt, not through the pool: the pool would keep retrying a refused
    /// connection until its acquire deadline, where one quick answer is all a probe needs.
    async fn probe(&self) -> anyhow::Result<()> {
        let options = self.inner.pool.connect_options();
        let connection = tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| anyhow::anyhow!("no connection within {PROBE_TIMEOUT:?}"))??;
        // Closing politely is a courtesy; the probe already succeeded.
        let _ = connection.close().await;
        Ok(())
    }

    /// What [`guard`] needs for one listener's routes: the listener's name (for the metric)
    /// and the 503 it answers with while the breaker is open.
    pub fn guard(&self, listener: &'static str, refusal: fn() -> Response) -> Guard {
        Guard {
            gate: self.clone(),
            listener,
            refusal,
        }
    }
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
    fn connection_failures_are_unreachable_and_query_errors_are_not() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(is_unreachable_sqlx(&sqlx::Error::Io(refused)));
        assert!(is_unreachable_sqlx(&sqlx::Error::PoolTimedOut));
        assert!(!is_unreachable_sqlx(&sqlx::Error::RowNotFound));
        assert!(!is_unreachable_sqlx(&sqlx::Error::ColumnNotFound(
            "x".into()
        )));
        for code in ["08006", "08001", "57P01", "57P03", "53300"] {
            assert!(is_unreachable_sqlstate(code), "{code}");
        }
        for code in ["23505", "40001", "42P01", "22P02", "57014"] {
            assert!(!is_unreachable_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn the_chain_of_causes_is_searched() {
        let wrapped = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("reading a timeline");
        assert!(is_unreachable(wrapped.as_ref()));
        let bug = anyhow::Error::new(sqlx::Error::RowNotFound).context("reading a timeline");
        assert!(!is_unreachable(bug.as_ref()));
        let directory = domain::DirectoryError::Unreachable("down".into());
        assert!(is_unreachable(&directory));
        assert!(!is_unreachable(&domain::DirectoryError::Failed(
            "bad".into()
        )));
    }
}
