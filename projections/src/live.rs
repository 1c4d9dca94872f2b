//! Live timelines: what the timeline projection has just applied, announced to whoever in
//! this process is watching; and the checkpoint-following that every live feed shares (the
//! chat's too, in [`crate::chat_live`]).
//!
//! Whichever replica's projector applies a batch, every replica learns that the timeline's
//! checkpoint moved (see [`crate::progress`]). The feed follows the checkpoint of the version
//! this process reads: for the stretch of the log between where it was and where the
//! checkpoint now is, it reads which messages were posted or flagged and broadcasts them —
//! posted ones as the view now shows them. So a live page shows exactly what a reload would
//! show, on every replica, and nothing before the view has it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use database::event_log::{self, LogPosition, StoredEvent};
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::progress::Progress;
use crate::projection::Projection;
use crate::queries::ReadModels;
use crate::timeline::Timeline;
use crate::timelines::TimelineEntry;

/// How many updates a slow subscriber may fall behind before it is told it lagged.
const CHANNEL_CAPACITY: usize = 1024;
/// Events read from the log per query while catching up with the checkpoint.
const READ_BATCH: i64 = 1000;
/// The pause before retrying after the database failed.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// A change to the timelines, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveUpdate {
    /// A message was posted; this is how the timelines now show it.
    Posted(TimelineEntry),
    /// A message was flagged and has left every timeline.
    Hidden { message_id: String },
}

/// The broadcast of timeline changes in this process. Cheap to clone.
#[derive(Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<Arc<LiveUpdate>>,
}

impl Default for LiveFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl LiveFeed {
    /// A feed with nobody watching yet.
    pub fn new() -> Self {
        Self {
            sender: broadcast::Sender::new(CHANNEL_CAPACITY),
        }
    }

    /// Updates from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveUpdate>> {
        self.sender.subscribe()
    }

    /// Follows the timeline's checkpoint until `cancel` fires, broadcasting what each move
    /// of it brought. When nobody is subscribed, moves are skipped without reading anything.
    pub async fn run(self, pool: PgPool, progress: Progress, cancel: CancellationToken) {
        let reads = ReadModels::new(pool.clone(), progress.clone());
        let announce = |from, to| self.announce(&pool, &reads, from, to);
        let nobody_listens = || self.sender.receiver_count() == 0;
        follow_checkpoint(&progress, &Timeline, &cancel, nobody_listens, announce).await;
    }

    /// Broadcasts the timeline changes of the log after `from` up to and including `to`.
    async fn announce(
        &self,
        pool: &PgPool,
        reads: &ReadModels,
        from: LogPosition,
        to: LogPosition,
    ) -> anyhow::Result<()> {
        let events = read_stretch(pool, &Timeline, from, to).await?;
        let mut posted = Vec::new();
        let mut changes = Vec::with_capacity(events.len());
        for event in events {
            let message_id = event.aggregate_id;
            match event.event_type.as_str() {
                "MessagePosted" => {
                    posted.push(message_id.clone());
                    changes.push((message_id, true));
                }
                "MessageFlagged" | "MessageRemoved" => changes.push((message_id, false)),
                // An unflagged message returns to its old place, deep in the timelines; a
                // reload shows it there, which a live insertion at the top would not.
                _ => {}
            }
        }
        let mut visible = reads.entries_by_id(&posted).await?;
        for (message_id, is_post) in changes {
            let update = if is_post {
                // Flagged again since (or never visible): nothing to show.
                let Some(index) = visible.iter().position(|e| e.message_id == message_id) else {
                    continue;
                };
                LiveUpdate::Posted(visible.swap_remove(index))
            } else {
                LiveUpdate::Hidden { message_id }
            };
            // An error only means nobody is subscribed any more.
            let _ = self.sender.send(Arc::new(update));
        }
        Ok(())
    }
}

/// Follows the checkpoint of the version of `projection` this process reads, until `cancel`
/// fires: each stretch of the log the checkpoint moves over is handed to `announce` (after,
/// up to and including) — everything in it is committed and applied to the view — unless
/// `nobody_listens()`, when the stretch is skipped unread. A failed announcement is tried
/// again after a pause.
pub(crate) async fn follow_checkpoint<Announce, Announcing>(
    progress: &Progress,
    projection: &dyn Projection,
    cancel: &CancellationToken,
    nobody_listens: impl Fn() -> bool,
    mut announce: Announce,
) where
    Announce: FnMut(LogPosition, LogPosition) -> Announcing,
    Announcing: Future<Output = anyhow::Result<()>>,
{
    let Some(mut checkpoint) = progress.watch(projection.name()) else {
        tracing::error!(
            projection = projection.name(),
            "the projection is not tracked; no live updates"
        );
        return;
    };
    let mut announced = *checkpoint.borrow_and_update();
    loop {
        let target = *checkpoint.borrow_and_update();
        if target > announced {
            if nobody_listens() {
                announced = target;
            } else {
                match announce(announced, target).await {
                    Ok(()) => announced = target,
                    Err(err) => {
                        tracing::warn!(
                            error = format!("{err:#}"),
                            projection = projection.name(),
                            "reading live updates; retrying"
                        );
                        tokio::select! {
                            () = cancel.cancelled() => return,
                            () = tokio::time::sleep(RETRY_DELAY) => continue,
                        }
                    }
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = checkpoint.changed() => if changed.is_err() { return },
        }
    }
}

/// The events of `projection`'s aggregate type after `from`, up to and including `to`, in
/// log order, read in batches.
pub(crate) async fn read_stretch(
    pool: &PgPool,
    projection: &dyn Projection,
    mut from: LogPosition,
    to: LogPosition,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut events = Vec::new();
    loop {
        let read = event_log::read_between(pool, projection.aggregate_type(), from, to, READ_BATCH)
            .await?;
        let full = read.len() as i64 == READ_BATCH;
        events.extend(read);
        match events.last() {
            Some(last) if full => from = last.position,
            _ => return Ok(events),
        }
    }
}
