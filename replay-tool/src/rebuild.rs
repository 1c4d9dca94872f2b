//! `rebuild`: a new version of each chosen projection, built from position zero beside the
//! active one (which keeps serving and consuming), caught up to the live head, then switched
//! to atomically, retiring the old one (see `projections::maintenance`).
//!
//! Interrupting it (Ctrl-C, SIGTERM, or a kill) loses at most the batch in flight: batches are
//! committed one by one, and the next `rebuild` of the projection resumes the version being
//! built from its checkpoint.

use std::sync::Arc;
use std::time::Duration;

use crate::admin::Admin;
use projections::maintenance::{self, Switched};
use projections::projector::BatchOutcome;
use projections::{LogPosition, Projection, ProjectorSettings};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::report::ProgressReport;

/// How a rebuild ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebuilt {
    Switched(Switched),
    /// Stopped on request; the version stays `building` and a later rebuild resumes it.
    Interrupted {
        version: i32,
        position: LogPosition,
    },
}

/// Rebuilds `projection` in batches of `batch_size` events, reporting progress; stops early
/// when `cancel` fires.
pub async fn rebuild(
    admin: &Admin,
    projection: &Arc<dyn Projection>,
    batch_size: i64,
    cancel: &CancellationToken,
) -> anyhow::Result<Rebuilt> {
    let pool = &admin.pool;
    let settings = ProjectorSettings {
        batch_size,
        keys: admin.keys.clone(),
        ..ProjectorSettings::default()
    };
    let (building, resumed) = maintenance::building_version(pool, projection, settings).await?;
    let name = projection.name();
    let version = building.version();
    let start = current_checkpoint(pool, name, version).await?;
    let remaining = maintenance::lag(pool, projection.as_ref(), start)
        .await?
        .events;
    eprintln!(
        "{name}: {} version {version}{}",
        if resumed { "resuming" } else { "building" },
        if resumed {
            format!(" from position {}", start.global_position)
        } else {
            String::new()
        }
    );
    let mut report = ProgressReport::new(format!("{name} v{version}"), remaining.max(0) as u64);
    let mut position = start;
    let mut batches: u64 = 0;
    loop {
        if cancel.is_cancelled() {
            report.abandon(&format!(
                "interrupted; run `minitwit-replay rebuild {name}` to resume"
            ));
            return Ok(Rebuilt::Interrupted { version, position });
        }
        match building.run_batch().await? {
            BatchOutcome::Applied {
                events, through, ..
            } => {
                position = through;
                report.advance(events as u64, through.global_position);
                batches += 1;
                if batches.is_multiple_of(50) {
                    // Now and then, how much the log has grown meanwhile.
                    let behind = maintenance::lag(pool, projection.as_ref(), position).await?;
                    report.raise_total(report.done() + behind.events.max(0) as u64);
                }
            }
            // Caught up with everything committed: what arrives from now on is little, and
            // the switch applies it.
            BatchOutcome::Idle { waiting: false } => break,
            // Another worker (a server projecting the version too) moved it: go on from there.
            BatchOutcome::Raced => {}
            BatchOutcome::Idle { waiting: true } | BatchOutcome::Busy => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let switched = maintenance::activate(pool, &building).await?;
    let retired = switched.retired.map_or_else(String::new, |old| {
        format!("; version {old} retired (drop it with `minitwit-replay prune`)")
    });
    report.finish(&format!(
        "version {version} active from position {}{retired}",
        switched.position.global_position
    ));
    Ok(Rebuilt::Switched(switched))
}

async fn current_checkpoint(
    pool: &PgPool,
    projection: &str,
    version: i32,
) -> anyhow::Result<LogPosition> {
    maintenance::versions(pool)
        .await?
        .into_iter()
        .find(|info| info.projection == projection && info.version == version)
        .map(|info| info.checkpoint)
        .ok_or_else(|| anyhow::anyhow!("no checkpoint of {projection} version {version}"))
}
