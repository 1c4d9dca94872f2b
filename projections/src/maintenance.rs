//! Blue/green maintenance of projection versions, for the admin tool (and the tests): the
//! first versions a fresh database needs, what versions exist and how far behind they are,
//! building a new version beside the active one, activating it, comparing a fresh rebuild
//! with the active version, and dropping retired versions.
//!
//! A rebuild never touches the active version: the new one is built from position zero in
//! committed batches (so no long transaction holds back the horizon), and the switch is one
//! short transaction that holds both versions' batch locks, brings the new version up to at
//! least the old one's checkpoint, then retires the old and activates the new. Servers move
//! over by themselves (see [`crate::supervisor`]).

use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use database::event_log::{self, LogPosition};
use sqlx::{PgConnection, PgPool, Row};

use crate::projection::{lock_name, schema_name, Projection, VersionState};
use crate::projector::{BatchOutcome, Projector, ProjectorSettings};

/// One version of one projection, as `projection_checkpoints` has it.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub projection: String,
    pub version: i32,
    pub state: String,
    pub checkpoint: LogPosition,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl VersionInfo {
    pub fn schema(&self) -> String {
        schema_name(&self.projection, self.version)
    }
}

/// Every version of every projection, by projection and version.
pub async fn versions(pool: &PgPool) -> Result<Vec<VersionInfo>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT projection, version, state, last_tx::text::bigint AS last_tx, last_position, \
                last_error, updated_at \
         FROM projection_checkpoints ORDER BY projection, version",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(VersionInfo {
                projection: row.try_get("projection")?,
                version: row.try_get("version")?,
                state: row.try_get("state")?,
                checkpoint: LogPosition {
                    transaction_id: row.try_get("last_tx")?,
                    global_position: row.try_get("last_position")?,
                },
                last_error: row.try_get("last_error")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .collect()
}

pub use crate::progress::active_version;

/// Gives each of `projections` without an active version its code's version, created empty
/// and active (the servers' projectors fill it): what a fresh database needs before a server
/// can serve. It creates schemas, so it is the owner's work: the admin tool's `migrate`, or a
/// server that connects as the owner.
pub async fn create_missing_views(
    pool: &PgPool,
    projections: &[Arc<dyn Projection>],
) -> anyhow::Result<()> {
    for projection in projections {
        if active_version(pool, projection.name()).await?.is_none() {
            Projector::new(
                pool.clone(),
                projection.clone(),
                ProjectorSettings::default(),
            )
            .at_version(projection.version())
            .prepare()
            .await
            .with_context(|| format!("creating the views of {}", projection.name()))?;
        }
    }
    Ok(())
}

pub use database::event_log::Lag;

/// How far `checkpoint` is behind the log for `projection`.
pub async fn lag(
    pool: &PgPool,
    projection: &dyn Projection,
    checkpoint: LogPosition,
) -> Result<Lag, sqlx::Error> {
    event_log::lag(pool, projection.aggregate_type(), checkpoint).await
}

/// The version of `projection` a rebuild works on: the one already being built (a rebuild
/// that was interrupted resumes it), or a new one after every existing version. The second
/// value says whether it resumes.
pub async fn building_version(
    pool: &PgPool,
    projection: &Arc<dyn Projection>,
    settings: ProjectorSettings,
) -> anyhow::Result<(Projector, bool)> {
    let building: Option<i32> = sqlx::query_scalar(
        "SELECT max(version) FROM projection_checkpoints WHERE projection = $1 AND state = 'building'",
    )
    .bind(projection.name())
    .fetch_one(pool)
    .await?;
    if let Some(version) = building {
        let projector =
            Projector::new(pool.clone(), projection.clone(), settings).at_version(version);
        return Ok((projector, true));
    }
    let projector = new_version(pool, projection, settings, VersionState::Building).await?;
    Ok((projector, false))
}

/// A new, empty version of `projection` in `state`, numbered after every existing one.
async fn new_version(
    pool: &PgPool,
    projection: &Arc<dyn Projection>,
    settings: ProjectorSettings,
    state: VersionState,
) -> anyhow::Result<Projector> {
    let latest: Option<i32> =
        sqlx::query_scalar("SELECT max(version) FROM projection_checkpoints WHERE projection = $1")
            .bind(projection.name())
            .fetch_one(pool)
            .await?;
    let version = latest.map_or(projection.version(), |latest| latest + 1);
    let projector = Projector::new(pool.clone(), projection.clone(), settings).at_version(version);
    projector.prepare_as(state).await?;
    Ok(projector)
}

/// A finished switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switched {
    /// The version retired (none if the projection had no active version).
    pub retired: Option<i32>,
    pub activated: i32,
    /// Where the new version stood when it took over.
    pub position: LogPosition,
}

/// Activates `building`'s version and retires the active one, in one transaction that
/// first brings the new version up to at least the old one's checkpoint. Call it once the
/// new version is nearly caught up: the old version's projector waits meanwhile.
pub async fn activate(pool: &PgPool, building: &Projector) -> anyhow::Result<Switched> {
    let name = building.projection().name();
    // Built without its read indexes (they are cheaper to build once than to keep up); they
    // must exist before anyone reads it. Outside the switch's transaction, so the serving
    // version keeps projecting meanwhile, and the switch applies what arrived.
    building.create_indexes().await?;
    let mut tx = pool.begin().await?;
    // No row lock here: a projector takes its version's batch lock and then updates the
    // checkpoint row, so taking the row first and the batch lock second would deadlock with
    // it. The batch locks below serialise switches; the state update checks it still holds.
    let active: Option<i32> = sqlx::query_scalar(
        "SELECT version FROM projection_checkpoints WHERE projection = $1 AND state = 'active'",
    )
    .bind(name)
    .fetch_optional(&mut *tx)
    .await?
    // The first version of a projection is active from the start: nothing to retire.
    .filter(|&active| active != building.version());
    let mut target = LogPosition::default();
    if let Some(active) = active {
        // Old first, then new: the only order anything takes both in.
        hold_lock(&mut tx, &schema_name(name, active)).await?;
        target = checkpoint(&mut tx, name, active).await?;
    }
    hold_lock(&mut tx, building.schema()).await?;
    let mut position = checkpoint(&mut tx, name, building.version()).await?;
    while position < target {
        match building.batch_within(&mut tx).await? {
            BatchOutcome::Applied { through, .. } => position = through,
            // Everything up to the old checkpoint is committed and below the horizon, and
            // both versions read the same events: running dry before it is a bug.
            outcome => bail!(
                "{} stopped short of the active version's checkpoint ({outcome:?})",
                building.schema()
            ),
        }
    }
    if let Some(active) = active {
        let retired = set_state(&mut tx, name, active, VersionState::Retired).await?;
        anyhow::ensure!(
            retired,
            "{name} version {active} stopped being active meanwhile (another switch?)"
        );
    }
    set_state(&mut tx, name, building.version(), VersionState::Active).await?;
    // The batches above turned the wait for the WAL flush off, as every batch does; the
    // switch itself is acknowledged to an operator, so it is made durable before that.
    sqlx::query("SET LOCAL synchronous_commit = on")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Switched {
        retired: active,
        activated: building.version(),
        position,
    })
}

/// Waits for, then holds until the end of `tx`, the batch lock of the version in `schema`.
async fn hold_lock(tx: &mut PgConnection, schema: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(lock_name(schema))
        .execute(tx)
        .await?;
    Ok(())
}

async fn checkpoint(
    conn: &mut PgConnection,
    projection: &str,
    version: i32,
) -> anyhow::Result<LogPosition> {
    let row = sqlx::query(
        "SELECT last_tx::text::bigint AS last_tx, last_position FROM projection_checkpoints \
         WHERE projection = $1 AND version = $2",
    )
    .bind(projection)
    .bind(version)
    .fetch_optional(conn)
    .await?
    .with_context(|| format!("no checkpoint of {projection} version {version}"))?;
    Ok(LogPosition {
        transaction_id: row.try_get("last_tx")?,
        global_position: row.try_get("last_position")?,
    })
}

/// Moves `version` of `projection` to `state` from another state; whether it did.
async fn set_state(
    conn: &mut PgConnection,
    projection: &str,
    version: i32,
    state: VersionState,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "UPDATE projection_checkpoints SET state = $3, updated_at = now() \
         WHERE projection = $1 AND version = $2 AND state <> $3",
    )
    .bind(projection)
    .bind(version)
    .bind(state.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(changed == 1)
}

/// Drops a version's schema and forgets it.
async fn drop_version(pool: &PgPool, projection: &str, version: i32) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        schema_name(projection, version)
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1 AND version = $2")
        .bind(projection)
        .bind(version)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Drops the versions retired more than `grace` ago (a server moves off a retired version
/// within moments, or when it next looks, every few seconds); returns them.
pub async fn prune(pool: &PgPool, grace: std::time::Duration) -> anyhow::Result<Vec<VersionInfo>> {
    let cutoff = Utc::now() - chrono::Duration::from_std(grace)?;
    let mut dropped = Vec::new();
    for version in versions(pool).await? {
        if version.state == VersionState::Retired.as_str() && version.updated_at < cutoff {
            drop_version(pool, &version.projection, version.version).await?;
            dropped.push(version);
        }
    }
    Ok(dropped)
}

/// How one table of a rebuilt version compares with the active version's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableComparison {
    pub table: String,
    pub active_rows: i64,
    pub rebuilt_rows: i64,
    /// Rows the active version has and the rebuild does not (count, and a few as JSON).
    pub only_active: i64,
    pub only_active_sample: Vec<String>,
    /// Rows the rebuild has and the active version does not.
    pub only_rebuilt: i64,
    pub only_rebuilt_sample: Vec<String>,
}

impl TableComparison {
    pub fn is_equal(&self) -> bool {
        self.only_active == 0 && self.only_rebuilt == 0
    }
}

/// A rebuild of one projection compared with its active version, at the same log position.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub projection: String,
    pub active_version: i32,
    pub position: LogPosition,
    pub tables: Vec<TableComparison>,
}

impl Comparison {
    pub fn is_equal(&self) -> bool {
        self.tables.iter().all(TableComparison::is_equal)
    }
}

/// How many differing rows a comparison shows (all are counted).
const SAMPLE_ROWS: i64 = 5;

/// Rebuilds `projection` from the log into a scratch version, in batches as `settings` says,
/// and compares it, row for row, with the active version at the same log position; the
/// scratch version is dropped afterwards. The active version keeps serving and moving
/// meanwhile: the comparison reads it in one snapshot, and the scratch is brought to exactly
/// that snapshot's checkpoint.
pub async fn verify(
    pool: &PgPool,
    projection: &Arc<dyn Projection>,
    settings: ProjectorSettings,
) -> anyhow::Result<Comparison> {
    let name = projection.name();
    // An interrupted verify leaves its scratch behind; it is of no use to anyone.
    for leftover in versions(pool).await? {
        if leftover.projection == name && leftover.state == VersionState::Scratch.as_str() {
            drop_version(pool, name, leftover.version).await?;
        }
    }
    let active: i32 = sqlx::query_scalar(
        "SELECT version FROM projection_checkpoints WHERE projection = $1 AND state = 'active'",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .with_context(|| format!("{name} has no active version to compare with"))?;
    let scratch = new_version(pool, projection, settings.clone(), VersionState::Scratch).await?;
    let compared = compare_with_active(pool, &scratch, active, settings).await;
    drop_version(pool, name, scratch.version()).await?;
    compared
}

async fn compare_with_active(
    pool: &PgPool,
    scratch: &Projector,
    active: i32,
    settings: ProjectorSettings,
) -> anyhow::Result<Comparison> {
    let name = scratch.projection().name();
    // Most of the work in committed batches, up to where the active version stands now...
    let mut conn = pool.acquire().await?;
    let now = checkpoint(&mut conn, name, active).await?;
    drop(conn);
    let bounded = |until| {
        Projector::new(pool.clone(), scratch.projection().clone(), settings.clone())
            .at_version(scratch.version())
            .up_to(until)
    };
    bounded(now).catch_up().await?;
    // ...then the rest, and the comparison, in one snapshot of the active version.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let position = checkpoint(&mut tx, name, active).await?;
    let remainder = bounded(position);
    while let BatchOutcome::Applied { .. } = remainder.batch_within(&mut tx).await? {}
    let reached = checkpoint(&mut tx, name, scratch.version()).await?;
    if reached < position {
        bail!("the rebuild of {name} stopped short of the active version's position");
    }
    let live = schema_name(name, active);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 ORDER BY table_name",
    )
    .bind(&live)
    .fetch_all(&mut *tx)
    .await?;
    let mut compared = Vec::with_capacity(tables.len());
    for table in tables {
        compared.push(compare_table(&mut tx, &live, scratch.schema(), &table).await?);
    }
    tx.rollback().await?;
    Ok(Comparison {
        projection: name.to_owned(),
        active_version: active,
        position,
        tables: compared,
    })
}

async fn compare_table(
    conn: &mut PgConnection,
    active: &str,
    rebuilt: &str,
    table: &str,
) -> Result<TableComparison, sqlx::Error> {
    let rows = |schema: &str| format!("SELECT count(*) FROM {schema}.{table}");
    let difference = |left: &str, right: &str| {
        format!("(TABLE {left}.{table} EXCEPT ALL TABLE {right}.{table})")
    };
    let active_rows: i64 = sqlx::query_scalar(&rows(active))
        .fetch_one(&mut *conn)
        .await?;
    let rebuilt_rows: i64 = sqlx::query_scalar(&rows(rebuilt))
        .fetch_one(&mut *conn)
        .await?;
    let mut sides = Vec::with_capacity(2);
    for (left, right) in [(active, rebuilt), (rebuilt, active)] {
        let only = difference(left, right);
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {only} AS d"))
            .fetch_one(&mut *conn)
            .await?;
        let sample: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(d)::text FROM {only} AS d LIMIT {SAMPLE_ROWS}"
        ))
        .fetch_all(&mut *conn)
        .await?;
        sides.push((total, sample));
    }
    let (only_rebuilt, only_rebuilt_sample) = sides.pop().expect("two sides");
    let (only_active, only_active_sample) = sides.pop().expect("two sides");
    Ok(TableComparison {
        table: table.to_owned(),
        active_rows,
        rebuilt_rows,
        only_active,
        only_active_sample,
        only_rebuilt,
        only_rebuilt_sample,
    })
}
