//! Metrics: the Prometheus recorder and `GET /metrics`, the RED metrics of every request, and
//! the figures read from the database every few seconds (the log's head, each projection's
//! position and lag, the transaction horizon, `latest`, the business totals, the pool).
//!
//! Names follow Prometheus' conventions (base units, `_total` counters, `_seconds`), with
//! `minitwit_` on the domain's own; routes are matched templates (`/msgs/{username}`), never raw
//! paths, and methods are HTTP's own or `other`: no label takes a value a client chose. Every histogram has explicit buckets — without them the exporter would publish
//! summaries, which cannot be aggregated across replicas — and 0.3 s, the simulator's
//! timeout, is one of the edges. The catalogue is in the README.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use database::event_log;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use projections::maintenance;
use projections::{Progress, Projection};
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

/// Histogram buckets, in seconds; 0.3 is the simulator's timeout.
const BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0];
/// How often the database-derived gauges are refreshed.
const COLLECT_INTERVAL: Duration = Duration::from_secs(5);

/// What `/metrics` renders: the process-wide recorder (installed once, however many servers
/// a process runs, as the tests do) and the process collector.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
}

impl Metrics {
    /// The process's recorder, installed on first use.
    pub fn install() -> Self {
        static INSTALLED: OnceLock<Metrics> = OnceLock::new();
        INSTALLED
            .get_or_init(|| {
                let handle = PrometheusBuilder::new()
                    .set_buckets(&BUCKETS)
                    .expect("constant buckets are valid")
                    .install_recorder()
                    .expect("no other metrics recorder is installed");
                let process = metrics_process::Collector::default();
                process.describe();
                metrics::gauge!(
                    "minitwit_build_info",
                    "version" => env!("CARGO_PKG_VERSION"),
                    "git_sha" => option_env!("MINITWIT_GIT_SHA").unwrap_or("unknown")
                )
                .set(1.0);
                Self {
                    handle,
                    process: Arc::new(process),
                }
            })
            .clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}

/// The Prometheus text exposition of this process's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((status = 200, description = "Prometheus' text format, version 0.0.4 (catalogue in the README)", content_type = "text/plain", body = String)),
)]
pub async fn metrics_endpoint(State(metrics): State<Metrics>) -> Response {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
        .into_response()
}

/// Middleware: the RED metrics of each request on `listener` ("api" or "web").
pub async fn track_requests(
    State(listener): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = method_label(request.method());
    let active = metrics::gauge!("http_server_active_requests", "listener" => listener);
    active.increment(1.0);
    let started = Instant::now();
    let response = next.run(request).await;
    active.decrement(1.0);
    metrics::histogram!(
        "http_server_request_duration_seconds",
        "listener" => listener, "method" => method, "route" => route.clone()
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "http_server_requests_total",
        "listener" => listener, "method" => method, "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

/// A request's method as a label value: the methods HTTP defines by their names, and every
/// other one as `other`. Anyone may send any token as a method; were it a label, each new
/// one would add series to every scrape for the life of the process.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Refreshes the database-derived gauges every few seconds until `cancel` fires. Every
/// replica does it, so each reports the same shared figures and any one of them is enough.
pub async fn collect(
    pool: PgPool,
    progress: Progress,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let projections = projections::all();
    let mut ticks = tokio::time::interval(COLLECT_INTERVAL);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        metrics.handle.run_upkeep();
        if let Err(err) = collect_once(&pool, &progress, &projections).await {
            tracing::warn!(error = %err, "could not read the figures for the metrics");
        }
    }
}

async fn collect_once(
    pool: &PgPool,
    progress: &Progress,
    projections: &[Arc<dyn Projection>],
) -> Result<(), sqlx::Error> {
    // Everything is read first and published after, the log's head last: whoever sees a new
    // head sees the figures read with it (all of them read after it).
    let head = event_log::head(pool).await?.unwrap_or(0);
    let row = sqlx::query(
        "SELECT (SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8 \
                 FROM pg_stat_activity WHERE backend_xid IS NOT NULL) AS horizon_age, \
                (SELECT latest FROM simulator_latest) AS latest, \
                (SELECT extract(epoch FROM updated_at)::float8 FROM simulator_latest) AS latest_at, \
                (SELECT coalesce(extract(epoch FROM max(finished_at)), 0)::float8 FROM backups) \
                    AS last_backup_at",
    )
    .fetch_one(pool)
    .await?;
    let horizon_age: f64 = row.try_get("horizon_age")?;
    let latest: Option<i64> = row.try_get("latest")?;
    let latest_at: Option<f64> = row.try_get("latest_at")?;
    let last_backup_at: f64 = row.try_get("last_backup_at")?;

    let mut positions = Vec::with_capacity(projections.len());
    for projection in projections {
        let name = projection.name();
        let version = progress.reading_version(name);
        let Some(checkpoint) = progress.checkpoint(name, version) else {
            continue;
        };
        let lag = maintenance::lag(pool, projection.as_ref(), checkpoint).await?;
        positions.push((name, version, checkpoint, lag));
    }

    let accounts = progress.schema("accounts");
    let timeline = progress.schema("timeline");
    let totals = sqlx::query(&format!(
        "SELECT (SELECT count(*) FROM {accounts}.users) AS users, \
                (SELECT count(*) FROM {accounts}.follows) AS follows, \
                (SELECT count(*) FROM {timeline}.messages WHERE NOT flagged) AS messages"
    ))
    .fetch_one(pool)
    .await?;

    metrics::gauge!("minitwit_db_pool_connections", "state" => "idle").set(pool.num_idle() as f64);
    metrics::gauge!("minitwit_db_pool_connections", "state" => "in_use")
        .set(pool.size().saturating_sub(pool.num_idle() as u32) as f64);
    for total in ["users", "follows", "messages"] {
        metrics::gauge!(format!("minitwit_{total}")).set(totals.try_get::<i64, _>(total)? as f64);
    }
    for (name, version, checkpoint, lag) in positions {
        metrics::gauge!(
            "minitwit_projection_position",
            "projection" => name, "version" => version.to_string()
        )
        .set(checkpoint.global_position as f64);
        metrics::gauge!("minitwit_projection_lag_events", "projection" => name)
            .set(lag.events as f64);
        metrics::gauge!("minitwit_projection_lag_seconds", "projection" => name).set(lag.seconds);
    }
    metrics::gauge!("minitwit_transaction_horizon_age_seconds").set(horizon_age.max(0.0));
    if let Some(latest) = latest {
        metrics::gauge!("minitwit_latest_processed_id").set(latest as f64);
    }
    if let Some(at) = latest_at {
        metrics::gauge!("minitwit_latest_updated_timestamp_seconds").set(at);
    }
    // 0 until the first backup: an alert on the newest backup's age then fires, as it should
    // where none has ever been made.
    metrics::gauge!("minitwit_backup_last_success_timestamp_seconds").set(last_backup_at);
    metrics::gauge!("minitwit_event_store_head_position").set(head as f64);
    Ok(())
}
