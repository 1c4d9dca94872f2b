//! Where the views under the timelines stand in the database, asked once for every read
//! waiting at that moment.
//!
//! A cached timeline ([`crate::timeline_cache`]) may be answered only while the views stand
//! where they stood when it was read, and only the database knows that: another replica may
//! have moved them, and acknowledged a write on the strength of it, a moment ago. So every
//! read asks — but it need not ask alone. What a read needs is an answer read *after it
//! arrived*: any probe that starts later sees every write acknowledged before the read came
//! in. One task sends the probes: it takes every read waiting, sends one probe for all of
//! them, answers them all, and meanwhile lets newcomers queue for the next probe (the one in
//! flight may have started before they came). Sixteen concurrent readers then cost a few
//! probes instead of sixteen, and a lone reader still costs one.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use sqlx::{PgPool, Row};
use tokio::sync::{mpsc, oneshot};

use database::event_log::LogPosition;

use crate::accounts::Accounts;
use crate::progress::Progress;
use crate::projection::Projection;
use crate::timeline::Timeline;

/// Where the views a timeline reads stood: their versions and checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViewMarks {
    pub timeline_version: i32,
    pub timeline: LogPosition,
    pub accounts_version: i32,
    pub accounts: LogPosition,
}

/// A read waiting for the next probe's answer (`None`: the views are not prepared yet, or
/// the probe failed, and the read goes to the views uncached).
type Waiting = oneshot::Sender<Option<ViewMarks>>;

/// The probe of one process's reads, shared by every clone.
#[derive(Clone)]
pub struct ViewMarksProbe {
    pool: PgPool,
    progress: Progress,
    /// The queue of the task that sends the probes, started by the first read (it needs the
    /// runtime); the task ends when the last clone is dropped.
    queue: Arc<OnceLock<mpsc::UnboundedSender<Waiting>>>,
}

impl ViewMarksProbe {
    pub fn new(pool: PgPool, progress: Progress) -> Self {
        Self {
            pool,
            progress,
            queue: Arc::default(),
        }
    }

    /// Where the timeline and accounts views this process reads stand, read by a probe that
    /// started after this call.
    pub async fn marks(&self) -> Option<ViewMarks> {
        let queue = self.queue.get_or_init(|| {
            let (queue, waiting) = mpsc::unbounded_channel();
            let (pool, progress) = (self.pool.clone(), self.progress.clone());
            tokio::spawn(answer_in_rounds(waiting, move || {
                let (pool, progress) = (pool.clone(), progress.clone());
                async move { probe(&pool, &progress).await }
            }));
            queue
        });
        let (waiting, answer) = oneshot::channel();
        if queue.send(waiting).is_err() {
            // Only a runtime shutting down stops the task; read for this call alone.
            return probe(&self.pool, &self.progress).await;
        }
        answer.await.ok().flatten()
    }
}

/// The probing task: one probe per round, for every read that was waiting when it started.
async fn answer_in_rounds<Probe, Answer>(
    mut queue: mpsc::UnboundedReceiver<Waiting>,
    mut probe: Probe,
) where
    Probe: FnMut() -> Answer,
    Answer: Future<Output = Option<ViewMarks>>,
{
    let mut round = Vec::new();
    while queue.recv_many(&mut round, usize::MAX).await > 0 {
        let marks = probe().await;
        for waiting in round.drain(..) {
            // A read that gave up (its request was dropped) needs no answer.
            let _ = waiting.send(marks);
        }
    }
}

/// One primary-key probe of the two views' checkpoints, on the versions `progress` reads.
async fn probe(pool: &PgPool, progress: &Progress) -> Option<ViewMarks> {
    let (timeline_version, accounts_version) = (
        progress.reading_version(Timeline.name()),
        progress.reading_version(Accounts.name()),
    );
    let row = sqlx::query(
        "SELECT t.last_tx::text::bigint AS timeline_tx, t.last_position AS timeline_position, \
                a.last_tx::text::bigint AS accounts_tx, a.last_position AS accounts_position \
         FROM projection_checkpoints t, projection_checkpoints a \
         WHERE t.projection = $1 AND t.version = $2 AND a.projection = $3 AND a.version = $4",
    )
    .bind(Timeline.name())
    .bind(timeline_version)
    .bind(Accounts.name())
    .bind(accounts_version)
    .fetch_optional(pool)
    .await;
    let marks = row.and_then(|row| {
        row.map(|row| {
            Ok(ViewMarks {
                timeline_version,
                timeline: LogPosition {
                    transaction_id: row.try_get("timeline_tx")?,
                    global_position: row.try_get("timeline_position")?,
                },
                accounts_version,
                accounts: LogPosition {
                    transaction_id: row.try_get("accounts_tx")?,
                    global_position: row.try_get("accounts_position")?,
                },
            })
        })
        .transpose()
    });
    // The reads fall back to the views themselves, which report a failing database in
    // their own right.
    marks.unwrap_or_else(|err| {
        tracing::debug!(error = %err, "probing the timeline views' checkpoints failed");
        None
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI32, Ordering};

    use tokio::sync::Semaphore;

    use super::*;

    /// Marks that say which probe read them.
    fn marks_of_probe(number: i32) -> Option<ViewMarks> {
        let position = LogPosition {
            transaction_id: 0,
            global_position: 0,
        };
        Some(ViewMarks {
            timeline_version: number,
            timeline: position,
            accounts_version: 1,
            accounts: position,
        })
    }

    async fn ask(queue: &mpsc::UnboundedSender<Waiting>) -> oneshot::Receiver<Option<ViewMarks>> {
        let (waiting, answer) = oneshot::channel();
        queue.send(waiting).expect("the task runs");
        answer
    }

    #[tokio::test]
    async fn a_read_that_arrives_during_a_probe_waits_for_the_next_one() {
        // Each probe starts (counted) and then waits for a permit: the test decides when it
        // answers.
        let started = Arc::new(AtomicI32::new(0));
        let permits = Arc::new(Semaphore::new(0));
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(answer_in_rounds(waiting, {
            let (started, permits) = (started.clone(), permits.clone());
            move || {
                let number = started.fetch_add(1, Ordering::SeqCst) + 1;
                let permits = permits.clone();
                async move {
                    permits.acquire().await.expect("open").forget();
                    marks_of_probe(number)
                }
            }
        }));

        let first = ask(&queue).await;
        while started.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        // Probe 1 is in flight; these two came after it started, so it cannot answer them.
        let second = ask(&queue).await;
        let third = ask(&queue).await;
        permits.add_permits(1);
        assert_eq!(first.await.expect("answered"), marks_of_probe(1));
        permits.add_permits(1);
        // Both waited together and share probe 2.
        assert_eq!(second.await.expect("answered"), marks_of_probe(2));
        assert_eq!(third.await.expect("answered"), marks_of_probe(2));
        assert_eq!(started.load(Ordering::SeqCst), 2);
    }
}
