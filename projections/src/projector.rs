//! The catch-up projector: turns the global event log into view tables, exactly once.
//!
//! Each batch is one transaction that
//! 1. takes a per-projection advisory transaction lock (`pg_try_advisory_xact_lock`), so that
//!    with any number of replicas only one batch of a projection runs at a time — whoever
//!    wins does the work, and a crashed holder releases it by dying;
//! 2. reads the checkpoint `(last_tx, last_position)`;
//! 3. reads the next events *below the transaction horizon*
//!    (`transaction_id < pg_snapshot_xmin(pg_current_snapshot())`) in
//!    `(transaction_id, global_position)` order — no transaction still running can add rows
//!    there, so nothing can appear behind the checkpoint later;
//! 4. applies them with a few idempotent, set-based statements per batch (see
//!    [`Projection::apply_batch`]);
//! 5. moves the checkpoint with a compare-and-set on its old value, rolling back if someone
//!    else moved it (a fence against a stale worker).
//!
//! Views and checkpoint commit together, so every event takes effect exactly once. Each
//! projection version owns a schema named `<projection>_v<version>`, which lets a new version
//! be built beside the one serving reads.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cqrs_es::persist::EventUpcaster;
use database::event_log::{self, BatchScope, CheckpointMoved, Claim, LogPosition};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::projection::{lock_name, schema_name, Projection, VersionState};

/// How a projector paces itself.
#[derive(Debug, Clone, Copy)]
pub struct ProjectorSettings {
    /// Events per batch (and so per transaction).
    pub batch_size: i64,
    /// How often to look for events when no notification arrives. Notifications can arrive
    /// while an older transaction still holds the horizon back, so polling is not optional.
    pub poll_interval: Duration,
    /// The pause after a failed batch before trying again.
    pub retry_delay: Duration,
    /// How soon to look again when committed events wait above the horizon and no commit
    /// is announced meanwhile. Appends and projector batches announce their commits (see
    /// [`Progress::watch_commits`]), and a held-back projector looks again at once on those;
    /// this bound is for a transaction of someone else's holding the horizon back.
    pub blocked_recheck: Duration,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            retry_delay: Duration::from_secs(1),
            blocked_recheck: Duration::from_millis(20),
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Another worker holds this projection's lock.
    Busy,
    /// Nothing below the horizon past the checkpoint. `waiting` says whether committed
    /// events wait above it, held back by a transaction that is still open.
    Idle { waiting: bool },
    /// `events` events applied; the checkpoint moved to `through`. `more` says whether
    /// committed events follow (below the horizon or held back above it).
    Applied {
        events: usize,
        through: LogPosition,
        more: bool,
    },
    /// Another worker moved the checkpoint between this batch's read of it and its move;
    /// nothing was applied, and the next batch starts from the new checkpoint.
    Raced,
}

/// Runs one projection at one version.
pub struct Projector {
    pool: PgPool,
    projection: Arc<dyn Projection>,
    version: i32,
    schema: String,
    settings: ProjectorSettings,
    upcasters: Vec<Box<dyn EventUpcaster>>,
    progress: Option<Progress>,
    wake: Arc<Notify>,
    /// Announced commits, where a progress tracker announces them.
    commits: Option<watch::Receiver<u64>>,
    /// The newest announced append of the events this projector reads.
    appended: Option<watch::Receiver<LogPosition>>,
    /// Where to stop: events after it are left alone (see [`Projector::up_to`]).
    until: Option<LogPosition>,
}

impl Projector {
    /// A projector for `projection` at the version the code builds.
    pub fn new(pool: PgPool, projection: Arc<dyn Projection>, settings: ProjectorSettings) -> Self {
        let version = projection.version();
        Self {
            schema: schema_name(projection.name(), version),
            pool,
            projection,
            version,
            settings,
            upcasters: domain::upcasting::upcasters(),
            progress: None,
            wake: Arc::new(Notify::new()),
            commits: None,
            appended: None,
            until: None,
        }
    }

    /// Applies nothing after `position`: the version then stands exactly at `position` once
    /// caught up (how `verify` compares a rebuild with a live version at the same point).
    pub fn up_to(mut self, position: LogPosition) -> Self {
        self.until = Some(position);
        self
    }

    /// Builds into `version` instead (a scratch or replacement copy of the views).
    pub fn at_version(mut self, version: i32) -> Self {
        self.version = version;
        self.schema = schema_name(self.projection.name(), version);
        self
    }

    /// Reports every committed batch to `progress` and lets it wake this projector.
    pub fn reporting_to(mut self, progress: &Progress) -> Self {
        self.wake = progress.register_waker();
        self.commits = Some(progress.watch_commits());
        self.appended = progress.watch_appended(self.projection.aggregate_type());
        self.progress = Some(progress.clone());
        self
    }

    /// The schema this projector writes.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The version this projector writes.
    pub fn version(&self) -> i32 {
        self.version
    }

    /// The projection this projector runs.
    pub fn projection(&self) -> &Arc<dyn Projection> {
        &self.projection
    }

    /// Creates the schema, tables and checkpoint row if missing. The first version of a
    /// projection to be prepared becomes the active one, with its read indexes; later ones
    /// are `building`, and get their indexes from [`Projector::create_indexes`] once built.
    pub async fn prepare(&self) -> anyhow::Result<()> {
        self.prepare_as(VersionState::Building).await
    }

    /// Like [`Projector::prepare`], with `state` for a new version other than the first.
    pub async fn prepare_as(&self, state: VersionState) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        // Concurrent CREATE ... IF NOT EXISTS from two replicas can still collide in the
        // catalogs; a blocking lock makes the second wait and then find everything there.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("prepare:{}", self.schema))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {}", self.schema))
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(&self.projection.create_tables_sql(&self.schema))
            .execute(&mut *tx)
            .await
            .with_context(|| format!("creating the tables of {}", self.schema))?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (projection, version, state) \
             SELECT $1, $2, CASE WHEN EXISTS (SELECT 1 FROM projection_checkpoints \
                 WHERE projection = $1 AND state = 'active') THEN $3 ELSE 'active' END \
             ON CONFLICT (projection, version) DO NOTHING",
        )
        .bind(self.projection.name())
        .bind(self.version)
        .bind(state.as_str())
        .execute(&mut *tx)
        .await?;
        let state: String = sqlx::query_scalar(
            "SELECT state FROM projection_checkpoints WHERE projection = $1 AND version = $2",
        )
        .bind(self.projection.name())
        .bind(self.version)
        .fetch_one(&mut *tx)
        .await?;
        if state == VersionState::Active.as_str() {
            self.create_indexes_within(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Creates the read indexes of this version if missing: a rebuilt version needs them
    /// before it is switched to.
    pub async fn create_indexes(&self) -> anyhow::Result<()> {
        let mut conn = self.pool.acquire().await?;
        self.create_indexes_within(&mut conn).await
    }

    async fn create_indexes_within(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::raw_sql(&self.projection.create_indexes_sql(&self.schema))
            .execute(conn)
            .await
            .with_context(|| format!("creating the indexes of {}", self.schema))?;
        Ok(())
    }

    /// Runs one batch: one transaction, committed if it applied events and rolled back
    /// otherwise — explicitly, because a dropped sqlx transaction only queues its rollback,
    /// and until that runs the pooled connection keeps holding the projection's lock, so the
    /// next batch (on another connection) would find the projection "busy".
    #[tracing::instrument(name = "projection_batch", skip(self), fields(projection = %self.schema))]
    pub async fn run_batch(&self) -> anyhow::Result<BatchOutcome> {
        let started = std::time::Instant::now();
        // The claim turns off the wait for the WAL flush at commit (see
        // `event_log::claim_batch`): that takes a disk flush off every write's
        // read-your-writes wait.
        let mut tx = self.pool.begin().await?;
        let outcome = match self.batch_within(&mut tx).await {
            Ok(outcome) => outcome,
            Err(err) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed batch");
                }
                return Err(err);
            }
        };
        let BatchOutcome::Applied {
            events, through, ..
        } = outcome
        else {
            tx.rollback().await?;
            return Ok(outcome);
        };
        tx.commit().await?;
        self.record_applied(events, through, started);
        Ok(outcome)
    }

    /// Counts a committed batch and reports it to this process's progress.
    fn record_applied(&self, events: usize, through: LogPosition, started: std::time::Instant) {
        let labels = [("projection", self.projection.name().to_owned())];
        metrics::counter!("minitwit_projection_events_applied_total", &labels)
            .increment(events as u64);
        metrics::histogram!("minitwit_projection_batch_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        if let Some(progress) = &self.progress {
            progress.record(self.projection.name(), self.version, through);
        }
    }

    /// The work of one batch inside the caller's transaction `tx`, which commits or rolls
    /// back. Takes this version's lock for the rest of `tx` (re-entrant: a caller may hold it
    /// already).
    pub async fn batch_within(&self, tx: &mut PgConnection) -> anyhow::Result<BatchOutcome> {
        // Without an end, the end is beyond every possible position.
        let until = self.until.unwrap_or(LogPosition {
            transaction_id: i64::MAX,
            global_position: i64::MAX,
        });
        let aggregate_type = self.projection.aggregate_type();
        let scope = BatchScope {
            lock_name: &lock_name(&self.schema),
            projection: self.projection.name(),
            version: self.version,
            aggregate_type,
            until,
            limit: self.settings.batch_size,
        };
        let claim = match event_log::claim_batch(&mut *tx, scope).await {
            Ok(Ok(claim)) => claim,
            Ok(Err(CheckpointMoved)) => return Ok(BatchOutcome::Raced),
            Err(sqlx::Error::RowNotFound) => {
                anyhow::bail!("no checkpoint row for {}; run prepare first", self.schema)
            }
            Err(err) => return Err(err.into()),
        };
        let (from, events, more) = match claim {
            Claim::Busy => return Ok(BatchOutcome::Busy),
            Claim::Empty { waiting } => return Ok(BatchOutcome::Idle { waiting }),
            Claim::Batch { from, events, more } => (from, events, more),
        };
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            unreachable!("a claimed batch has events");
        };
        let through = last.position;
        self.projection
            .apply_batch(&mut *tx, &self.schema, &events, &self.upcasters)
            .await
            .with_context(|| {
                format!(
                    "applying {} events (positions {} to {}, in log order, after {}) to {}",
                    events.len(),
                    first.position.global_position,
                    through.global_position,
                    from.global_position,
                    self.schema
                )
            })?;
        Ok(BatchOutcome::Applied {
            events: events.len(),
            through,
            more,
        })
    }

    /// Applies batches until every committed event is applied; returns how many were.
    /// Waits while another worker holds the lock (it may stop at any time) and while
    /// committed events wait above the horizon.
    pub async fn catch_up(&self) -> anyhow::Result<u64> {
        let mut applied = 0;
        loop {
            match self.run_batch().await? {
                BatchOutcome::Applied { events, .. } => applied += events as u64,
                BatchOutcome::Busy | BatchOutcome::Idle { waiting: true } => {
                    tokio::time::sleep(self.settings.blocked_recheck).await;
                }
                BatchOutcome::Raced => {}
                BatchOutcome::Idle { waiting: false } => return Ok(applied),
            }
        }
    }

    /// Projects until `cancel` fires: drains the backlog, then sleeps until woken by a
    /// notification or the poll interval — or only briefly while committed events wait
    /// above the horizon. A failing batch is retried after a delay and its error recorded
    /// on the checkpoint row; an event is never skipped.
    pub async fn run(mut self, cancel: CancellationToken) {
        tracing::info!(projection = %self.schema, "projector started");
        let mut failures = 0;
        loop {
            // Commits and appends from here on count as news after this batch.
            if let Some(commits) = &mut self.commits {
                commits.borrow_and_update();
            }
            if let Some(appended) = &mut self.appended {
                appended.borrow_and_update();
            }
            let batch = self.run_batch().await;
            failures = if batch.is_ok() { 0 } else { failures + 1 };
            let pause = match batch {
                // Shutdown is checked here too, or a long backlog would be drained to the
                // end before the projector stopped.
                Ok(BatchOutcome::Applied { .. } | BatchOutcome::Raced) if cancel.is_cancelled() => {
                    break
                }
                Ok(BatchOutcome::Raced) => continue,
                // A full batch: the backlog goes on below the horizon.
                Ok(BatchOutcome::Applied {
                    events, more: true, ..
                }) if events as i64 >= self.settings.batch_size => continue,
                // Committed events wait above the horizon, as after an idle batch that saw
                // them: wait for the transaction in the way.
                Ok(
                    BatchOutcome::Applied { more: true, .. } | BatchOutcome::Idle { waiting: true },
                ) => {
                    if self.held_back(&cancel).await {
                        break;
                    }
                    continue;
                }
                // Caught up: the next commit wakes the projector (its writer in-process, or
                // the notification), and the poll is the fallback.
                Ok(BatchOutcome::Applied { more: false, .. }) => self.settings.poll_interval,
                Ok(BatchOutcome::Idle { waiting: false } | BatchOutcome::Busy) => {
                    self.settings.poll_interval
                }
                Err(err) => {
                    tracing::error!(projection = %self.schema, error = format!("{err:#}"), "projection batch failed");
                    metrics::counter!("minitwit_projection_errors_total", "projection" => self.projection.name())
                        .increment(1);
                    self.record_error(&err).await;
                    // Doubling while the failures last (up to 8×): a database that is down
                    // costs a log line every few seconds, not a flood. A write or the
                    // notification listener's reconnection wakes the projector earlier.
                    self.settings.retry_delay * (1 << (failures - 1).min(3))
                }
            };
            let wake = self.wake.clone();
            tokio::select! {
                () = cancel.cancelled() => break,
                () = wake.notified() => {}
                () = self.appended_past_checkpoint() => {}
                () = tokio::time::sleep(pause) => {}
            }
        }
        tracing::info!(projection = %self.schema, "projector stopped");
    }

    /// Returns once an append of the events this projector reads is announced past its
    /// checkpoint (never, without a progress tracker). An announcement of what it has
    /// applied already — the notification of an append whose writer woke it in-process —
    /// is no reason for a batch.
    async fn appended_past_checkpoint(&mut self) {
        let (Some(progress), Some(appended)) = (&self.progress, &mut self.appended) else {
            return std::future::pending().await;
        };
        let (name, version) = (self.projection.name(), self.version);
        // Only announcements made since the last batch began count: one the batch has seen
        // would wake a projector that another replica keeps busy over and over.
        while appended.changed().await.is_ok() {
            let head = *appended.borrow_and_update();
            if progress
                .checkpoint(name, version)
                .is_none_or(|checkpoint| head > checkpoint)
            {
                return;
            }
        }
        // The tracker is gone; the other wake-ups remain.
        std::future::pending::<()>().await;
    }

    /// Waits while committed events are held back above the horizon: until a commit is
    /// announced (most likely the transaction in the way), a wake-up, or the re-check bound.
    /// Returns whether to stop.
    async fn held_back(&mut self, cancel: &CancellationToken) -> bool {
        let recheck = tokio::time::sleep(self.settings.blocked_recheck);
        let commit = async {
            match &mut self.commits {
                // A closed channel (the tracker gone) leaves the bound to decide.
                Some(commits) => {
                    if commits.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => true,
            () = self.wake.notified() => false,
            () = commit => false,
            () = recheck => false,
        }
    }

    async fn record_error(&self, err: &anyhow::Error) {
        let result = sqlx::query(
            "UPDATE projection_checkpoints SET last_error = $3 WHERE projection = $1 AND version = $2",
        )
        .bind(self.projection.name())
        .bind(self.version)
        .bind(format!("{err:#}"))
        .execute(&self.pool)
        .await;
        if let Err(db_err) = result {
            tracing::warn!(error = %db_err, "could not record the projection error");
        }
    }
}
