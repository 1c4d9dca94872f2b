//! Health: `GET /health/live` (the process answers) and `GET /health/ready` (it can serve:
//! the database answers, every migration this build knows is applied, no projection is
//! stalled), both on the API listener; and `minitwit healthcheck [--live]`, the probe for
//! containers, which have no curl.
//!
//! Readiness does not demand caught-up projections: every replica shares them, so a lag
//! would take all replicas out of the load balancer at once — an outage instead of reads a
//! moment old. Only a projection whose oldest unapplied event has waited longer than the
//! configured bound (a stall) makes a replica unready.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use projections::maintenance;
use projections::Progress;
use serde::Serialize;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use utoipa::ToSchema;

/// How long each check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// What the readiness checks need.
#[derive(Clone)]
pub struct HealthState {
    pub pool: PgPool,
    pub progress: Progress,
    /// A projection whose oldest unapplied event has waited this long is stalled.
    pub max_projection_lag: Duration,
}

/// Whether the process answers.
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "live",
    tag = "operations",
    responses((status = 200, description = "The process answers", content_type = "text/plain", body = String, example = "ok")),
)]
pub async fn live() -> &'static str {
    "ok"
}

/// Each readiness check's verdict.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// "ok", or why the database does not answer.
    database: String,
    /// "ok", or which migrations of this build are not applied.
    migrations: String,
    /// "ok", or which projection is stalled.
    projections: String,
}

/// Whether this replica can serve: the database answers, this build's migrations are
/// applied and no projection is stalled.
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "ready",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: every check says \"ok\"", body = Readiness),
        (status = 503, description = "Not ready: the failing checks say why", body = Readiness),
    ),
)]
pub async fn ready(State(state): State<HealthState>) -> Response {
    let database = check(database(&state.pool)).await;
    let migrations = check(migrations(&state.pool)).await;
    let projections = check(projections_moving(&state)).await;
    let status = if database.is_ok() && migrations.is_ok() && projections.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let verdict = |result: anyhow::Result<()>| match result {
        Ok(()) => "ok".to_owned(),
        Err(err) => format!("{err:#}"),
    };
    let body = Readiness {
        database: verdict(database),
        migrations: verdict(migrations),
        projections: verdict(projections),
    };
    (status, Json(body)).into_response()
}

async fn check(work: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(CHECK_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {CHECK_TIMEOUT:?}")))
}

async fn database(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// Every migration of this build is applied, successfully, as this build has it.
async fn migrations(pool: &PgPool) -> anyhow::Result<()> {
    let missing = database::connect::unapplied_migrations(pool).await?;
    anyhow::ensure!(missing.is_empty(), "not applied: {missing:?}");
    Ok(())
}

async fn projections_moving(state: &HealthState) -> anyhow::Result<()> {
    for projection in projections::all() {
        let name = projection.name();
        let version = state.progress.reading_version(name);
        let checkpoint = state
            .progress
            .checkpoint(name, version)
            .with_context(|| format!("{name} is not tracked"))?;
        let lag = maintenance::lag(&state.pool, projection.as_ref(), checkpoint).await?;
        anyhow::ensure!(
            lag.seconds <= state.max_projection_lag.as_secs_f64(),
            "{name} has not applied an event for {:.0} s ({} waiting)",
            lag.seconds,
            lag.events
        );
    }
    Ok(())
}

/// `minitwit healthcheck`: whether the server at `address` answers `path` with 200. A plain
/// HTTP/1.1 request, so the probe needs nothing but the binary itself.
pub async fn probe(address: SocketAddr, path: &str) -> anyhow::Result<()> {
    // A server listening on every interface is reached on loopback.
    let target = if address.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], address.port()))
    } else {
        address
    };
    let answer = tokio::time::timeout(CHECK_TIMEOUT * 2, async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        anyhow::Ok(answer)
    })
    .await
    .context("no answer in time")?
    .with_context(|| format!("asking {target}"))?;
    let status_line = answer.lines().next().unwrap_or_default();
    anyhow::ensure!(
        status_line.split_whitespace().nth(1) == Some("200"),
        "not ready: {status_line} {}",
        answer.split("\r\n\r\n").nth(1).unwrap_or_default()
    );
    Ok(())
}
