//! The server's background tasks — the projectors, the live feeds, the progress listener, the
//! metric collector and the session sweeper — kept running for as long as it serves.
//!
//! Every task runs until shutdown. One that panics or returns before then has failed: that
//! is logged at error level with the task's name, counted in
//! `minitwit_background_task_restarts_total{task}`, and the task is started again after a
//! pause that doubles with each failure in a row (up to a minute), so one that
//! keeps failing neither spins nor goes unnoticed.
//!
//! Restarting rather than exiting is a judgement call. Each task picks up from shared state
//! (the projectors from their checkpoints, the feeds from the current checkpoint), and while
//! it is down the replica still answers — only reads wait for the views, within their bound,
//! and readiness reports a projection that stalls. Exiting would turn one task's bug into
//! every request failing on this replica, and would restart the same bug.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use projections::Supervisor;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The pause before the first restart of a task that failed.
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(100);
/// The longest pause before a restart.
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// A task that ran this long before failing starts again after the shortest pause: its
/// failure is not part of a run of failures.
const HEALTHY_RUN: Duration = Duration::from_secs(300);

type Run = Pin<Box<dyn Future<Output = ()> + Send>>;
type Start = Arc<dyn Fn(CancellationToken) -> Run + Send + Sync>;

/// The background tasks of one server, and their supervision.
pub struct BackgroundTasks {
    /// Fires at shutdown: every task ends on it, and nothing is restarted after it.
    cancel: CancellationToken,
    running: JoinSet<()>,
    tasks: HashMap<Id, Task>,
}

/// One supervised task: how to start it, and its recent failures.
struct Task {
    name: String,
    start: Start,
    /// Failures in a row, which set the pause before the next start.
    failures: u32,
    started: Instant,
}

impl BackgroundTasks {
    /// No tasks yet; all of them will stop when `cancel` fires.
    pub fn new(cancel: CancellationToken) -> Self {
        Self {
            cancel,
            running: JoinSet::new(),
            tasks: HashMap::new(),
        }
    }

    /// Starts the task `name`, which `start` runs until the token it is given fires (and
    /// runs anew should it fail).
    pub fn spawn<F, Fut>(&mut self, name: impl Into<String>, start: F)
    where
        F: Fn(CancellationToken) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        // Exported at zero from the start: a counter that first appears at 1 is no increase
        // to Prometheus, and the first restart would not alert.
        restarts(&name).increment(0);
        let start: Start = Arc::new(move |cancel| Box::pin(start(cancel)));
        self.launch(
            Task {
                name,
                start,
                failures: 0,
                started: Instant::now(),
            },
            Duration::ZERO,
        );
    }

    /// One task per projection of `supervisor`, each keeping its projection's active version
    /// projected (see [`Supervisor::supervise`]).
    pub fn spawn_projectors(&mut self, supervisor: &Arc<Supervisor>) {
        for projection in supervisor.projections() {
            let (supervisor, projection) = (supervisor.clone(), projection.clone());
            self.spawn(format!("projector {}", projection.name()), move |cancel| {
                let (supervisor, projection) = (supervisor.clone(), projection.clone());
                async move { supervisor.supervise(projection, cancel).await }
            });
        }
    }

    fn launch(&mut self, mut task: Task, delay: Duration) {
        let start = task.start.clone();
        let cancel = self.cancel.clone();
        let handle = self.running.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            start(cancel).await;
        });
        task.started = Instant::now() + delay;
        self.tasks.insert(handle.id(), task);
    }

    /// Keeps the tasks running until shutdown, then waits for every one of them to end.
    pub async fn supervise(mut self) {
        loop {
            let joined = tokio::select! {
                () = self.cancel.cancelled() => break,
                joined = self.running.join_next_with_id() => joined,
            };
            let Some(joined) = joined else { break };
            if self.cancel.is_cancelled() {
                break; // ended because shutdown began
            }
            let (id, failure) = match joined {
                Ok((id, ())) => (id, "returned while the server was serving".to_owned()),
                Err(err) => (err.id(), err.to_string()),
            };
            let Some(mut task) = self.tasks.remove(&id) else {
                continue;
            };
            task.failures = if task.started.elapsed() >= HEALTHY_RUN {
                1
            } else {
                task.failures + 1
            };
            let delay = restart_delay(task.failures);
            tracing::error!(
                task = task.name,
                failure,
                restart_in_ms = delay.as_millis(),
                "a background task stopped; restarting it"
            );
            restarts(&task.name).increment(1);
            self.launch(task, delay);
        }
        while let Some(joined) = self.running.join_next().await {
            if let Err(err) = joined {
                tracing::error!(error = %err, "a background task failed while stopping");
            }
        }
    }
}

/// The counter of `task`'s restarts.
fn restarts(task: &str) -> metrics::Counter {
    metrics::counter!("minitwit_background_task_restarts_total", "task" => task.to_owned())
}

/// The pause before restarting a task after its `failures`-th failure in a row.
fn restart_delay(failures: u32) -> Duration {
    FIRST_RESTART_DELAY
        .saturating_mul(2_u32.saturating_pow(failures.saturating_sub(1)))
        .min(MAX_RESTART_DELAY)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn the_pause_doubles_up_to_a_minute() {
        assert_eq!(restart_delay(1), Duration::from_millis(100));
        assert_eq!(restart_delay(2), Duration::from_millis(200));
        assert_eq!(restart_delay(4), Duration::from_millis(800));
        assert_eq!(restart_delay(11), MAX_RESTART_DELAY);
        assert_eq!(restart_delay(u32::MAX), MAX_RESTART_DELAY);
    }

    /// Starts a task that fails `failures` times (panicking or returning, alternately)
    /// before it runs properly, and counts its starts.
    fn flaky(tasks: &mut BackgroundTasks, failures: u32) -> Arc<AtomicU32> {
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        tasks.spawn("flaky", move |cancel: CancellationToken| {
            let start = counted.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if start <= failures {
                    if start % 2 == 1 {
                        panic!("failure number {start}");
                    }
                    return;
                }
                cancel.cancelled().await;
            }
        });
        starts
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_or_returns_is_started_again() {
        let cancel = CancellationToken::new();
        let mut tasks = BackgroundTasks::new(cancel.clone());
        let starts = flaky(&mut tasks, 3);
        let supervision = tokio::spawn(tasks.supervise());
        // Three failures: pauses of 100, 200 and 400 ms (virtual time) before starts 2–4.
        tokio::time::sleep(Duration::from_millis(650)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 4);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 4, "a healthy task runs on");
        cancel.cancel();
        supervision.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_restarted_once_shutdown_begins() {
        let cancel = CancellationToken::new();
        let mut tasks = BackgroundTasks::new(cancel.clone());
        let starts = flaky(&mut tasks, 1);
        cancel.cancel();
        tasks.supervise().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(starts.load(Ordering::SeqCst) <= 1);
    }
}
