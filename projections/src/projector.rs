//! The catch-up projector: turns the global event log into view tables, exactly once.
//!
//! A batch
//! 1. takes a per-projection advisory transaction lock (`pg_try_advisory_xact_lock`), so that
//!    with any number of replicas only one batch of a projection runs at a time — whoever
//!    wins does the work, and a crashed holder releases it by dying;
//! 2. reads the checkpoint `(last_tx, last_position)`;
//! 3. reads the next events *below the transaction horizon*
//!    (`transaction_id < pg_snapshot_xmin(pg_current_snapshot())`) in
//!    `(transaction_id, global_position)` order — no transaction still running can add rows
//!    there, so nothing can appear behind the checkpoint later;
//! 4. plans a few idempotent, set-based statements for them (see
//!    [`Projection::plan_batch`]);
//! 5. moves the checkpoint with a compare-and-set on its old value, in the same transaction
//!    as those statements, writing nothing if someone else moved it first (a fence against
//!    a stale worker).
//!
//! Views and checkpoint commit together, so every event takes effect exactly once. The live
//! projector commits (steps 1 and 5, with the first planned statement, and a check that the
//! log holds nothing else between the checkpoint and the batch's end) in one statement, on
//! the events its own process's writers handed over or, failing that, on events read by a
//! claim (steps 1–3) in a statement before it (see [`Projector::run_batch`]); a rebuild
//! claims and applies inside the caller's transaction (see [`Projector::batch_within`]). Each projection version owns
//! a schema named `<projection>_v<version>`, which lets a new version be built beside the one
//! serving reads.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cqrs_es::persist::EventUpcaster;
use database::event_log::{
    self, BatchScope, CheckpointMove, CheckpointMoved, Claim, ClaimedApply, ClaimedBatch,
    LogPosition, StoredEvent,
};
use database::keyring::Keyring;
use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, PgConnection, PgPool, Postgres};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::projection::{lock_name, schema_name, Projection, VersionState, ViewChange, CLAIM_HELD};

/// How a projector paces itself.
#[derive(Debug, Clone)]
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
    /// The data keys that open the events' sealed personal fields. By default none: a
    /// projector that meets a sealed field then fails, rather than project it unopened.
    pub keys: Keyring,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_millis(500),
            retry_delay: Duration::from_secs(1),
            blocked_recheck: Duration::from_millis(20),
            keys: Keyring::unavailable(),
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

/// The events of a claimed batch: never empty.
struct ClaimedEvents {
    /// The checkpoint they follow.
    from: LogPosition,
    events: Vec<StoredEvent>,
    /// Whether committed events follow them.
    more: bool,
    /// Whether they were handed over rather than read by a claim.
    handed_over: bool,
}

impl ClaimedEvents {
    fn through(&self) -> LogPosition {
        self.events
            .last()
            .expect("a claimed batch has events")
            .position
    }

    /// What applying them did.
    fn outcome(&self) -> BatchOutcome {
        BatchOutcome::Applied {
            events: self.events.len(),
            through: self.through(),
            more: self.more,
        }
    }
}

/// Moves `batch`'s checkpoint and runs `change` under that move, in one statement (see
/// [`event_log::apply_claimed`]).
async fn apply_first_change(
    conn: &mut PgConnection,
    batch: ClaimedBatch<'_>,
    change: Option<ViewChange>,
) -> anyhow::Result<ClaimedApply> {
    let (sql, arguments) = match change {
        Some(change) => {
            let (sql, arguments) = change.into_parts();
            let sql = sql.replace(CLAIM_HELD, event_log::CHECKPOINT_MOVED);
            (sql, Some(arguments.map_err(sqlx::Error::Encode)?))
        }
        None => (String::new(), None),
    };
    let change = arguments.map(|arguments| (sql.as_str(), arguments));
    Ok(event_log::apply_claimed(conn, batch, change).await?)
}

/// Runs `change` on its own, after the claim that moved its batch's checkpoint.
async fn run_change(conn: &mut PgConnection, change: ViewChange) -> anyhow::Result<()> {
    let (sql, arguments) = change.into_parts();
    sqlx::query_with(&sql, arguments.map_err(sqlx::Error::Encode)?)
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs one projection at one version.
pub struct Projector {
    pool: PgPool,
    projection: Arc<dyn Projection>,
    version: i32,
    schema: String,
    /// The advisory lock of this version's batches (see [`lock_name`]).
    lock_name: String,
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
    /// The pooled connection its batches run on, between them (see [`Projector::run_batch`]).
    connection: std::sync::Mutex<Option<PoolConnection<Postgres>>>,
}

impl Projector {
    /// A projector for `projection` at the version the code builds.
    pub fn new(pool: PgPool, projection: Arc<dyn Projection>, settings: ProjectorSettings) -> Self {
        let version = projection.version();
        let schema = schema_name(projection.name(), version);
        Self {
            lock_name: lock_name(&schema),
            schema,
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
            connection: std::sync::Mutex::new(None),
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
        self.lock_name = lock_name(&self.schema);
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
        // The tables are the creator's (the owner's); the servers' role maintains them.
        sqlx::query("SELECT grant_view_access($1)")
            .bind(&self.schema)
            .execute(&mut *tx)
            .await?;
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

    /// Runs one batch. Its events are the ones this process's writers handed over past the
    /// checkpoint (see [`Progress::hand_over`]), if there are any and nobody else is known
    /// to have appended since; otherwise, or if the log shows that those are not all there
    /// is, a claim reads them (a statement of its own, which moves nothing). Either way the
    /// changes commit together with the checkpoint's move (see [`Projector::commit`]): the
    /// usual batch of a command is one round trip, or two when it has to be read.
    #[tracing::instrument(name = "projection_batch", skip(self), fields(projection = %self.schema))]
    pub async fn run_batch(&self) -> anyhow::Result<BatchOutcome> {
        let started = std::time::Instant::now();
        // The connection of the last batch, if it went well: PostgreSQL plans a prepared
        // statement afresh for its first few runs on each connection, and a batch on
        // whichever pooled connection is free would pay that planning (a few tenths of a
        // millisecond) for every statement of every batch until the whole pool had warmed.
        let kept = self
            .connection
            .lock()
            .expect("projector connection poisoned")
            .take();
        let mut conn = match kept {
            Some(conn) => conn,
            None => self.pool.acquire().await?,
        };
        let outcome = self.batch_on(&mut conn, started).await?;
        // A failed batch drops its connection, which may be what failed.
        *self
            .connection
            .lock()
            .expect("projector connection poisoned") = Some(conn);
        Ok(outcome)
    }

    /// [`Projector::run_batch`] on `conn`.
    async fn batch_on(
        &self,
        conn: &mut PgConnection,
        started: std::time::Instant,
    ) -> anyhow::Result<BatchOutcome> {
        if let Some(mut handed_over) = self.handed_over() {
            self.open(&mut handed_over).await?;
            let outcome = self.commit(conn, &handed_over, started).await?;
            if matches!(outcome, BatchOutcome::Applied { .. }) {
                return Ok(outcome);
            }
            // Another worker was first, or other writers' events stand among these.
        }
        match self.claim(conn, CheckpointMove::WithChange).await? {
            Ok(claimed) => self.commit(conn, &claimed, started).await,
            Err(outcome) => Ok(outcome),
        }
    }

    /// The events after the checkpoint that this process's writers handed over, if they
    /// reach the newest append announced: the batch a claim would most likely read.
    fn handed_over(&self) -> Option<ClaimedEvents> {
        let progress = self.progress.as_ref()?;
        if self.until.is_some() {
            return None;
        }
        let from = progress.checkpoint(self.projection.name(), self.version)?;
        let limit = usize::try_from(self.settings.batch_size).unwrap_or(usize::MAX);
        let events = progress.handed_over_after(self.projection.aggregate_type(), from, limit);
        let through = events.last()?.position;
        let head = self.appended.as_ref().map(|head| *head.borrow());
        if head.is_some_and(|head| head > through) {
            return None;
        }
        Some(ClaimedEvents {
            from,
            events,
            more: false,
            handed_over: true,
        })
    }

    /// Applies `claimed` and moves the checkpoint over it, together. A batch whose changes
    /// are one statement commits in one statement, without a transaction around it; a larger
    /// one runs its changes in a transaction after the first, which moves the checkpoint,
    /// and rolls back explicitly on failure, because a dropped sqlx transaction only queues
    /// its rollback, and until that runs the pooled connection keeps holding the
    /// projection's lock, so the next batch (on another connection) would find it "busy".
    async fn commit(
        &self,
        conn: &mut PgConnection,
        claimed: &ClaimedEvents,
        started: std::time::Instant,
    ) -> anyhow::Result<BatchOutcome> {
        let positions: Option<Vec<i64>> = claimed.handed_over.then(|| {
            claimed
                .events
                .iter()
                .map(|event| event.position.global_position)
                .collect()
        });
        let batch = ClaimedBatch {
            lock_name: &self.lock_name,
            projection: self.projection.name(),
            version: self.version,
            aggregate_type: self.projection.aggregate_type(),
            from: claimed.from,
            through: claimed.through(),
            unread: positions.as_deref(),
        };
        let mut changes = self.plan(claimed)?.into_iter();
        let first = changes.next();
        let applied = if changes.len() == 0 {
            apply_first_change(conn, batch, first).await
        } else {
            let mut tx = conn.begin().await?;
            let applied = async {
                let applied = apply_first_change(&mut tx, batch, first).await?;
                if applied == ClaimedApply::Applied {
                    for change in changes {
                        run_change(&mut tx, change).await?;
                    }
                }
                anyhow::Ok(applied)
            }
            .await;
            match applied {
                Ok(ClaimedApply::Applied) => tx.commit().await?,
                Ok(_) => tx.rollback().await?,
                Err(_) => {
                    if let Err(rollback) = tx.rollback().await {
                        tracing::warn!(error = %rollback, "rolling back a failed batch");
                    }
                }
            }
            applied
        }
        .with_context(|| self.describe(claimed))?;
        Ok(match applied {
            ClaimedApply::Busy => BatchOutcome::Busy,
            ClaimedApply::Raced => BatchOutcome::Raced,
            ClaimedApply::Applied => {
                self.record_applied(claimed.events.len(), claimed.through(), started);
                claimed.outcome()
            }
        })
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
        let claimed = match self.claim(&mut *tx, CheckpointMove::InClaim).await? {
            Ok(claimed) => claimed,
            Err(outcome) => return Ok(outcome),
        };
        async {
            for change in self.plan(&claimed)? {
                run_change(&mut *tx, change).await?;
            }
            anyhow::Ok(())
        }
        .await
        .with_context(|| self.describe(&claimed))?;
        Ok(claimed.outcome())
    }

    /// Claims the next batch on `conn`: its events, or what stands in the way of one.
    async fn claim(
        &self,
        conn: &mut PgConnection,
        checkpoint_move: CheckpointMove,
    ) -> anyhow::Result<Result<ClaimedEvents, BatchOutcome>> {
        // Without an end, the end is beyond every possible position.
        let until = self.until.unwrap_or(LogPosition {
            transaction_id: i64::MAX,
            global_position: i64::MAX,
        });
        let scope = BatchScope {
            lock_name: &self.lock_name,
            projection: self.projection.name(),
            version: self.version,
            aggregate_type: self.projection.aggregate_type(),
            until,
            limit: self.settings.batch_size,
            checkpoint_move,
        };
        let claim = match event_log::claim_batch(conn, scope).await {
            Ok(Ok(claim)) => claim,
            Ok(Err(CheckpointMoved)) => return Ok(Err(BatchOutcome::Raced)),
            Err(sqlx::Error::RowNotFound) => {
                anyhow::bail!("no checkpoint row for {}; run prepare first", self.schema)
            }
            Err(err) => return Err(err.into()),
        };
        Ok(match claim {
            Claim::Busy => Err(BatchOutcome::Busy),
            Claim::Empty { waiting } => Err(BatchOutcome::Idle { waiting }),
            Claim::Batch { from, events, more } => {
                let mut claimed = ClaimedEvents {
                    from,
                    events,
                    more,
                    handed_over: false,
                };
                self.open(&mut claimed).await?;
                Ok(claimed)
            }
        })
    }

    /// Opens the sealed personal fields of `claimed`'s events, for the projection to see.
    async fn open(&self, claimed: &mut ClaimedEvents) -> anyhow::Result<()> {
        self.settings
            .keys
            .open_events(&mut claimed.events)
            .await
            .with_context(|| format!("opening the personal data of {}", self.describe(claimed)))
    }

    /// The statements that apply `claimed` to this version's tables.
    fn plan(&self, claimed: &ClaimedEvents) -> anyhow::Result<Vec<ViewChange>> {
        self.projection
            .plan_batch(&self.schema, &claimed.events, &self.upcasters)
            .with_context(|| self.describe(claimed))
    }

    /// Which events a failed batch was applying, and to what.
    fn describe(&self, claimed: &ClaimedEvents) -> String {
        format!(
            "applying {} events (positions {} to {}, in log order, after {}) to {}",
            claimed.events.len(),
            claimed.events[0].position.global_position,
            claimed.through().global_position,
            claimed.from.global_position,
            self.schema
        )
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
