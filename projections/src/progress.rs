//! Every replica's knowledge of how far each projection has got, and the wait for it.
//!
//! A write must not be acknowledged before the views that serve reads include it (read your
//! writes), whichever replica's projector applies it. Each replica keeps one `watch` channel
//! per projection holding its checkpoint; it is fed by this replica's own projectors after
//! each commit and, for every replica, by the `minitwit_projection_progress` notification the
//! checkpoint table sends on update. A waiter also re-reads the checkpoint now and then, so a
//! notification lost to a dropped connection costs latency, never correctness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::log::LogPosition;
use crate::projector::Projection;

/// The channel on which committed events are announced.
pub const EVENTS_CHANNEL: &str = "minitwit_events";
/// The channel on which checkpoint moves are announced (`projection:version:tx:position`).
pub const PROGRESS_CHANNEL: &str = "minitwit_projection_progress";

/// How often a waiter re-reads a checkpoint from the database when no notification came.
const RECHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Shared, cheaply cloned progress tracker of this process.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    views: HashMap<&'static str, TrackedView>,
    wakers: Mutex<Vec<Arc<Notify>>>,
}

struct TrackedView {
    version: i32,
    aggregate_types: &'static [&'static str],
    checkpoint: watch::Sender<LogPosition>,
}

impl Progress {
    /// Tracks the serving version of each of `projections`.
    pub fn new(pool: PgPool, projections: &[Arc<dyn Projection>]) -> Self {
        let views = projections
            .iter()
            .map(|projection| {
                let view = TrackedView {
                    version: projection.version(),
                    aggregate_types: projection.aggregate_types(),
                    checkpoint: watch::Sender::new(LogPosition::default()),
                };
                (projection.name(), view)
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                pool,
                views,
                wakers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Notes that `projection` at `version` has applied everything up to `position`.
    /// Checkpoints only move forward, so an older report is ignored.
    pub fn record(&self, projection: &str, version: i32, position: LogPosition) {
        if let Some(view) = self.inner.views.get(projection) {
            if view.version == version {
                view.checkpoint.send_if_modified(|current| {
                    let newer = position > *current;
                    if newer {
                        *current = position;
                    }
                    newer
                });
            }
        }
    }

    /// Follows the checkpoint of the serving version of `projection` (as this process knows
    /// it), or `None` for a projection this process does not track.
    pub fn watch(&self, projection: &str) -> Option<watch::Receiver<LogPosition>> {
        self.inner
            .views
            .get(projection)
            .map(|view| view.checkpoint.subscribe())
    }

    /// A handle that [`Progress::wake_projectors`] will notify.
    pub fn register_waker(&self) -> Arc<Notify> {
        let waker = Arc::new(Notify::new());
        self.inner
            .wakers
            .lock()
            .expect("waker list poisoned")
            .push(waker.clone());
        waker
    }

    /// Tells this process's projectors that new events may be there.
    pub fn wake_projectors(&self) {
        for waker in self
            .inner
            .wakers
            .lock()
            .expect("waker list poisoned")
            .iter()
        {
            waker.notify_one();
        }
    }

    /// Re-reads every tracked checkpoint from the database.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        for name in self.inner.views.keys() {
            self.refresh_one(name).await?;
        }
        Ok(())
    }

    async fn refresh_one(&self, projection: &'static str) -> Result<(), sqlx::Error> {
        let version = self.inner.views[projection].version;
        let row = sqlx::query(
            "SELECT last_tx::text::bigint AS last_tx, last_position FROM projection_checkpoints \
             WHERE projection = $1 AND version = $2",
        )
        .bind(projection)
        .bind(version)
        .fetch_optional(&self.inner.pool)
        .await?;
        if let Some(row) = row {
            let position = LogPosition {
                transaction_id: row.try_get("last_tx")?,
                global_position: row.try_get("last_position")?,
            };
            self.record(projection, version, position);
        }
        Ok(())
    }

    /// Waits until every view fed by `aggregate_type` has applied the event at `position`,
    /// or `timeout` passes. Returns whether it got there.
    pub async fn wait_until_applied(
        &self,
        aggregate_type: &str,
        position: LogPosition,
        timeout: Duration,
    ) -> Result<bool, sqlx::Error> {
        let deadline = Instant::now() + timeout;
        for (name, view) in &self.inner.views {
            if !view.aggregate_types.contains(&aggregate_type) {
                continue;
            }
            let mut checkpoint = view.checkpoint.subscribe();
            while *checkpoint.borrow_and_update() < position {
                let now = Instant::now();
                if now >= deadline {
                    return Ok(false);
                }
                let pause = RECHECK_INTERVAL.min(deadline - now);
                if tokio::time::timeout(pause, checkpoint.changed())
                    .await
                    .is_err()
                {
                    self.refresh_one(name).await?;
                }
            }
        }
        Ok(true)
    }
}

/// Listens for the log's notifications and turns them into wake-ups and progress.
pub struct ProgressListener {
    progress: Progress,
}

impl ProgressListener {
    /// A listener feeding `progress`.
    pub fn new(progress: Progress) -> Self {
        Self { progress }
    }

    /// Runs until `cancel` fires. Reconnects by itself; after a reconnect it wakes the
    /// projectors and re-reads checkpoints, since notifications sent meanwhile are lost.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.progress.inner.pool).await?;
        listener
            .listen_all([EVENTS_CHANNEL, PROGRESS_CHANNEL])
            .await?;
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    self.handle(notification.channel(), notification.payload())
                }
                Ok(None) => {
                    tracing::warn!("lost the notification connection; reconnecting");
                    self.catch_up_after_gap().await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "notification listener failed; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(()),
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    self.catch_up_after_gap().await;
                }
            }
        }
    }

    fn handle(&self, channel: &str, payload: &str) {
        if channel == EVENTS_CHANNEL {
            self.progress.wake_projectors();
            return;
        }
        let mut parts = payload.splitn(3, ':');
        let parsed = match (parts.next(), parts.next(), parts.next()) {
            (Some(projection), Some(version), Some(rest)) => version
                .parse()
                .ok()
                .zip(LogPosition::parse(rest))
                .map(|(version, position)| (projection, version, position)),
            _ => None,
        };
        match parsed {
            Some((projection, version, position)) => {
                self.progress.record(projection, version, position)
            }
            None => tracing::warn!(payload, "unreadable progress notification"),
        }
    }

    async fn catch_up_after_gap(&self) {
        self.progress.wake_projectors();
        if let Err(err) = self.progress.refresh().await {
            tracing::warn!(error = %err, "could not re-read projection checkpoints");
        }
    }
}
