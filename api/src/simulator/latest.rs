//! The simulator's `latest` value: stored from every request, read by `GET /latest`.

use std::collections::HashMap;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;

use serde::Serialize;
use sqlx::PgPool;
use utoipa::ToSchema;

use super::extract::Query;
use super::SimulatorState;
use crate::error::ApiError;
use crate::openapi::answers::DatabaseFailures;

/// Where `latest` lives: one row in Postgres, shared by every replica and kept across
/// restarts, so the simulator can resume after a crash.
#[derive(Clone)]
pub struct LatestStore {
    pool: PgPool,
}

impl LatestStore {
    /// A store on `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The stored value, or -1 before the first.
    pub async fn get(&self) -> Result<i64, sqlx::Error> {
        let stored: Option<i64> = sqlx::query_scalar("SELECT latest FROM simulator_latest")
            .fetch_optional(&self.pool)
            .await?;
        Ok(stored.unwrap_or(-1))
    }

    /// Replaces the stored value.
    ///
    /// Committed without waiting for the WAL flush (`synchronous_commit` off for this one
    /// statement's transaction), which saves a disk flush on every simulator request. The
    /// value is still durable when it matters: a request that writes an event commits it
    /// synchronously afterwards, and that flush carries this earlier commit record with it,
    /// so by the time a write is acknowledged its `latest` is on disk too. What a crash of
    /// PostgreSQL itself (not of a server) can lose is the `latest` of the reads and refusals
    /// of the last fraction of a second (at most three `wal_writer_delay`s), which the
    /// simulator then sends again — harmless, as every simulator action is safe to repeat.
    pub async fn set(&self, latest: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO simulator_latest (singleton, latest) \
             SELECT true, $1 FROM (SELECT set_config('synchronous_commit', 'off', true)) AS async \
             ON CONFLICT (singleton) DO UPDATE SET latest = EXCLUDED.latest, updated_at = now()",
        )
        .bind(latest)
        .execute(&self.pool)
        .await?;
        metrics::gauge!("minitwit_latest_processed_id").set(latest as f64);
        Ok(())
    }
}

/// The value of a `latest` parameter worth storing — an integer other than -1 — which is also
/// the number of the simulator's action.
pub(super) fn latest_to_store(raw: Option<&String>) -> Option<i64> {
    raw?.parse::<i64>().ok().filter(|&latest| latest != -1)
}

/// Middleware: sees that `latest` is stored by the time the request is answered, whatever the
/// answer. A command that writes events stores it in the same statement (the request's
/// [`commands::CommandContext`] carries it there); otherwise — a read, a refusal, a command
/// with nothing to write, a failure — it is stored here, after the handler. Nothing reads it
/// in between: `GET /latest` is a later request, and a sequential client sends that only
/// after this answer.
pub(super) async fn record(
    State(state): State<SimulatorState>,
    Query(query): Query<HashMap<String, String>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(value) = latest_to_store(query.get("latest")) else {
        return Ok(next.run(request).await);
    };
    let latest = commands::Latest::new(value);
    request.extensions_mut().insert(latest.clone());
    let response = next.run(request).await;
    if latest.is_stored() {
        metrics::gauge!("minitwit_latest_processed_id").set(value as f64);
    } else {
        state.latest.set(value).await?;
    }
    Ok(response)
}

/// The stored `latest`.
#[derive(Serialize, ToSchema)]
pub(super) struct Latest {
    /// The last stored value, or -1 before the first.
    latest: i64,
}

/// The last `latest` any request stored.
#[utoipa::path(
    get,
    path = "/latest",
    operation_id = "getLatest",
    tag = "simulator",
    responses(
        (status = 200, description = "The stored value", body = Latest),
        DatabaseFailures,
    ),
)]
pub(super) async fn get(State(state): State<SimulatorState>) -> Result<Json<Latest>, ApiError> {
    let latest = state.latest.get().await?;
    Ok(Json(Latest { latest }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_integers_other_than_minus_one_are_stored() {
        let value = |s: &str| latest_to_store(Some(&s.to_owned()));
        assert_eq!(value("42"), Some(42));
        assert_eq!(value("+7"), Some(7));
        assert_eq!(value("-5"), Some(-5));
        assert_eq!(value("-1"), None);
        assert_eq!(value("1.5"), None);
        assert_eq!(value("abc"), None);
        assert_eq!(value(""), None);
        assert_eq!(latest_to_store(None), None);
    }
}
