//! Live timelines: what the timeline projection has just applied, announced to whoever in
//! this process is watching.
//!
//! Whichever replica's projector applies a batch, every replica learns that the timeline's
//! checkpoint moved (see [`crate::progress`]). The feed follows the checkpoint of the version
//! this process reads: for the
//! stretch of the log between where it was and where the checkpoint now is, it reads which
//! messages were posted or flagged and broadcasts them — posted ones as the view now shows
//! them. So a live page shows exactly what a reload would show, on every replica, and nothing
//! before the view has it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgPool, Row};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::log::LogPosition;
use crate::progress::Progress;
use crate::projector::Projection;
use crate::queries::{ReadModels, TimelineEntry};
use crate::timeline::Timeline;

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
        let Some(mut checkpoint) = progress.watch(Timeline.name()) else {
            tracing::error!("the timeline projection is not tracked; no live updates");
            return;
        };
        let reads = ReadModels::new(pool.clone(), progress.clone());
        let mut announced = *checkpoint.borrow_and_update();
        loop {
            let target = *checkpoint.borrow_and_update();
            if target > announced {
                if self.sender.receiver_count() == 0 {
                    announced = target;
                } else {
                    match self.announce(&pool, &reads, announced, target).await {
                        Ok(()) => announced = target,
                        Err(err) => {
                            tracing::warn!(error = %err, "reading live timeline updates; retrying");
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

    /// Broadcasts the timeline changes of the log after `from` up to and including `to`.
    /// Everything in that stretch is committed and applied to the view, since the
    /// checkpoint passed it.
    async fn announce(
        &self,
        pool: &PgPool,
        reads: &ReadModels,
        mut from: LogPosition,
        to: LogPosition,
    ) -> Result<(), sqlx::Error> {
        loop {
            // Qualified: a bare `transaction_id` in ORDER BY would name the bigint alias, which
            // no index orders, and each read would sort the whole stretch.
            let rows = sqlx::query(
                "SELECT transaction_id::text::bigint AS transaction_id, global_position, \
                        aggregate_id, event_type \
                 FROM events \
                 WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
                   AND (transaction_id, global_position) <= ($3::bigint::text::xid8, $4) \
                   AND aggregate_type = 'message' \
                 ORDER BY events.transaction_id, events.global_position LIMIT $5",
            )
            .bind(from.transaction_id)
            .bind(from.global_position)
            .bind(to.transaction_id)
            .bind(to.global_position)
            .bind(READ_BATCH)
            .fetch_all(pool)
            .await?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            from = LogPosition {
                transaction_id: last.try_get("transaction_id")?,
                global_position: last.try_get("global_position")?,
            };
            let mut posted = Vec::new();
            let mut changes = Vec::with_capacity(rows.len());
            for row in &rows {
                let message_id: String = row.try_get("aggregate_id")?;
                match row.try_get::<&str, _>("event_type")? {
                    "MessagePosted" => {
                        posted.push(message_id.clone());
                        changes.push((message_id, true));
                    }
                    "MessageFlagged" => changes.push((message_id, false)),
                    // An unflagged message returns to its old place, deep in the timelines;
                    // a reload shows it there, which a live insertion at the top would not.
                    _ => {}
                }
            }
            let mut visible = reads.entries_by_id(&posted).await?;
            for (message_id, is_post) in changes {
                let update = if is_post {
                    // Flagged again since (or never visible): nothing to show.
                    let Some(index) = visible.iter().position(|e| e.message_id == message_id)
                    else {
                        continue;
                    };
                    LiveUpdate::Posted(visible.swap_remove(index))
                } else {
                    LiveUpdate::Hidden { message_id }
                };
                // An error only means nobody is subscribed any more.
                let _ = self.sender.send(Arc::new(update));
            }
        }
    }
}
