//! `status`: every version of every projection — state, checkpoint, lag in events and
//! seconds, last error — and the event log's size and head.

use std::fmt;

use chrono::{DateTime, Utc};
use database::event_log;
use projections::maintenance::{self, Lag};
use serde::Serialize;
use sqlx::PgPool;

/// One version of one projection.
#[derive(Debug, Serialize)]
pub struct VersionStatus {
    pub projection: String,
    pub version: i32,
    pub state: String,
    /// The log position everything up to which is applied.
    pub checkpoint: i64,
    /// Events not yet applied (absent for a projection this build does not know).
    pub lag_events: Option<i64>,
    /// How long the oldest of them has waited, in seconds.
    pub lag_seconds: Option<f64>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// The event log as a whole.
#[derive(Debug, Serialize)]
pub struct LogStatus {
    pub events: i64,
    /// The highest position written (absent while the log is empty).
    pub head_position: Option<i64>,
    /// The table and its indexes, on disk.
    pub size_bytes: i64,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub projections: Vec<VersionStatus>,
    pub log: LogStatus,
}

/// Reads the status.
pub async fn status(pool: &PgPool) -> anyhow::Result<Status> {
    let known = projections::all();
    let mut versions = Vec::new();
    for version in maintenance::versions(pool).await? {
        let projection = known.iter().find(|p| p.name() == version.projection);
        let lag = match projection {
            Some(projection) => {
                Some(maintenance::lag(pool, projection.as_ref(), version.checkpoint).await?)
            }
            None => None,
        };
        versions.push(VersionStatus {
            checkpoint: version.checkpoint.global_position,
            lag_events: lag.map(|Lag { events, .. }| events),
            lag_seconds: lag.map(|Lag { seconds, .. }| seconds),
            projection: version.projection,
            version: version.version,
            state: version.state,
            last_error: version.last_error,
            updated_at: version.updated_at,
        });
    }
    let log = event_log::extent(pool).await?;
    Ok(Status {
        projections: versions,
        log: LogStatus {
            events: log.events,
            head_position: log.head_position,
            size_bytes: log.size_bytes,
        },
    })
}

/// The human table.
impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>7} {:<9} {:>12} {:>12} {:>9}  {:<19}  LAST ERROR",
            "PROJECTION",
            "VERSION",
            "STATE",
            "CHECKPOINT",
            "LAG EVENTS",
            "LAG (S)",
            "UPDATED (UTC)"
        )?;
        for version in &self.projections {
            let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
            writeln!(
                f,
                "{:<12} {:>7} {:<9} {:>12} {:>12} {:>9}  {:<19}  {}",
                version.projection,
                version.version,
                version.state,
                version.checkpoint,
                or_dash(version.lag_events.map(|events| events.to_string())),
                or_dash(version.lag_seconds.map(|seconds| format!("{seconds:.1}"))),
                version.updated_at.format("%Y-%m-%d %H:%M:%S"),
                crate::terminal::printable(version.last_error.as_deref().unwrap_or("-")),
            )?;
        }
        write!(
            f,
            "event log: {} events, head position {}, {:.1} MiB on disk",
            self.log.events,
            self.log
                .head_position
                .map_or_else(|| "-".to_owned(), |head| head.to_string()),
            self.log.size_bytes as f64 / (1024.0 * 1024.0)
        )
    }
}
