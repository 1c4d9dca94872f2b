//! Running a server's projectors: one per projection, on whichever version is active, and
//! moving to a newly activated version without a moment of stale reads.
//!
//! `minitwit-replay rebuild` builds a new version beside the active one and then, in one
//! transaction, retires the old and activates the new. Each server learns of it (by the
//! `minitwit_projection_state` notification, or by looking every few seconds) and moves over:
//! 1. it starts projecting the new version, and from then on writes wait for both versions;
//! 2. once the new version has reached the old one's checkpoint, queries read the new one;
//! 3. then it stops projecting the old one.
//!
//! So a write acknowledged at any point is in the version that reads see, and no read goes
//! backwards.
//!
//! The server runs [`Supervisor::supervise`] once per projection, each as a task of its own
//! that it restarts should it fail.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::projection::Projection;
use crate::projector::{Projector, ProjectorSettings};

/// How often the active versions are looked up when no notification says they changed.
const STATE_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// How often a move to a new version re-checks whether the new one has caught up.
const CATCH_UP_CHECK: Duration = Duration::from_millis(20);

/// Runs and switches the projectors of one process.
pub struct Supervisor {
    pool: sqlx::PgPool,
    progress: Progress,
    settings: ProjectorSettings,
    projections: Vec<Arc<dyn Projection>>,
}

impl Supervisor {
    pub fn new(
        pool: sqlx::PgPool,
        progress: Progress,
        settings: ProjectorSettings,
        projections: Vec<Arc<dyn Projection>>,
    ) -> Self {
        Self {
            pool,
            progress,
            settings,
            projections,
        }
    }

    /// Has `progress` read and track the active version of every projection, which each
    /// must have (a fresh database's are made by [`crate::maintenance::create_missing_views`]).
    pub async fn prepare(&self) -> anyhow::Result<()> {
        for projection in &self.projections {
            let name = projection.name();
            let active = self
                .progress
                .active_version(name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no active version of {name}"))?;
            self.progress.serve(name, active);
        }
        self.progress.refresh().await?;
        Ok(())
    }

    fn projector(&self, projection: &Arc<dyn Projection>, version: i32) -> Projector {
        Projector::new(self.pool.clone(), projection.clone(), self.settings.clone())
            .at_version(version)
            .reporting_to(&self.progress)
    }

    /// The projections this supervisor keeps projected, each by its own [`Self::supervise`].
    pub fn projections(&self) -> &[Arc<dyn Projection>] {
        &self.projections
    }

    /// Keeps one projection's active version projected, moving to each newly activated one,
    /// until `cancel` fires. Should its projector panic, this panics with the projector's
    /// panic, and should it end by itself, this ends too: the server's task supervision then
    /// logs the failure and starts this again, which resumes from the checkpoints.
    pub async fn supervise(&self, projection: Arc<dyn Projection>, cancel: CancellationToken) {
        let name = projection.name();
        let mut current = self.progress.reading_version(name);
        let mut running = self.spawn(&projection, current, &cancel);
        let mut states = self.progress.watch_states();
        loop {
            tokio::select! {
                // At shutdown the projector ends because of the cancellation: not by itself.
                biased;
                () = cancel.cancelled() => break,
                ended = &mut running.handle => {
                    if let Err(err) = ended {
                        if err.is_panic() {
                            std::panic::resume_unwind(err.into_panic());
                        }
                    }
                    tracing::error!(projection = name, "the projector stopped by itself");
                    return;
                }
                _ = states.changed() => {}
                () = tokio::time::sleep(STATE_POLL_INTERVAL) => {}
            }
            let active = match self.progress.active_version(name).await {
                Ok(Some(active)) => active,
                Ok(None) => continue,
                Err(err) => {
                    tracing::warn!(projection = name, error = %err, "cannot read the active version");
                    continue;
                }
            };
            if active == current {
                continue;
            }
            tracing::info!(
                projection = name,
                from = current,
                to = active,
                "moving to a newly activated version"
            );
            self.progress.start_tracking(name, active);
            let next = self.spawn(&projection, active, &cancel);
            if !self.caught_up(name, current, active, &cancel).await {
                break;
            }
            self.progress.serve(name, active);
            running.stop().await;
            running = next;
            current = active;
            tracing::info!(
                projection = name,
                version = active,
                "now serving the new version"
            );
        }
        running.stop().await;
    }

    /// Waits until version `new` of `name` has reached `old`'s checkpoint; `false` if
    /// cancelled first.
    async fn caught_up(&self, name: &str, old: i32, new: i32, cancel: &CancellationToken) -> bool {
        loop {
            if let Err(err) = self.progress.refresh().await {
                tracing::warn!(projection = name, error = %err, "cannot read checkpoints");
            }
            let old_checkpoint = self.progress.checkpoint(name, old);
            let new_checkpoint = self.progress.checkpoint(name, new);
            if new_checkpoint >= old_checkpoint {
                return true;
            }
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep(CATCH_UP_CHECK) => {}
            }
        }
    }

    fn spawn(
        &self,
        projection: &Arc<dyn Projection>,
        version: i32,
        cancel: &CancellationToken,
    ) -> RunningProjector {
        let stop = cancel.child_token();
        let handle = tokio::spawn(self.projector(projection, version).run(stop.clone()));
        RunningProjector { stop, handle }
    }
}

/// A projector task and the means to stop it.
struct RunningProjector {
    stop: CancellationToken,
    handle: JoinHandle<()>,
}

impl RunningProjector {
    async fn stop(self) {
        self.stop.cancel();
        if let Err(err) = self.handle.await {
            tracing::error!(error = %err, "a projector panicked");
        }
    }
}
