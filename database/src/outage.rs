//! Database outages: which errors mean "PostgreSQL cannot be reached right now", and the
//! breaker that remembers that one is going on.
//!
//! - [`is_unreachable`] (and [`is_unreachable_sqlx`]) is the one classification. An outage is
//!   the client's to wait out, while anything else the database says is a failure, since
//!   retrying will not cure a bug.
//! - [`DatabaseGate`] is the breaker. The first request that finds the database unreachable
//!   trips it; while it is open, work that needs the database is refused at once without
//!   touching the pool, and one background probe tries a fresh connection every
//!   200 ms. The first probe that connects closes it. (The HTTP side, which
//!   answers 503 while the gate is open and trips it, is the `api` crate's.)
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

use sqlx::{Connection, PgConnection, PgPool};

/// How often the breaker tries to connect while the database is unreachable: also the
/// longest the service stays refusing after the database is back.
const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long one probe may take to connect. A database that needs longer is not back yet.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `err`, or any error in its chain of causes, says the database cannot be reached.
pub fn is_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(err), |err| err.source()).any(|err| {
        err.downcast_ref::<sqlx::Error>()
            .is_some_and(is_unreachable_sqlx)
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
    }
}
