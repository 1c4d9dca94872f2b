//! The server's background tasks under supervision: a projector that panics while the server
//! serves is started again, and its view catches up from the checkpoint the panic left.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use api::background::BackgroundTasks;
use cqrs_es::persist::EventUpcaster;
use projections::timeline::Timeline;
use projections::{Progress, Projection, ProjectorSettings, StoredEvent, Supervisor, ViewChange};
use test_support::database::TestDatabase;
use test_support::views::{append_message_event, await_projections_at_head, Altered, BatchApplier};
use tokio_util::sync::CancellationToken;

/// Panics on the first batch it is given, after planning it; plans every later one.
#[derive(Default)]
struct PanicsOnce {
    panicked: AtomicBool,
}

impl BatchApplier for PanicsOnce {
    fn plan(
        &self,
        real: &dyn Projection,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>> {
        let plan = real.plan_batch(schema, events, upcasters)?;
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("a projection bug, half-way through a batch");
        }
        Ok(plan)
    }
}

#[tokio::test]
async fn a_projector_that_panics_is_restarted_and_its_view_catches_up() {
    let db = TestDatabase::create().await;
    let timeline = Arc::new(Altered {
        real: Arc::new(Timeline),
        applier: PanicsOnce::default(),
    });
    let projections: Vec<Arc<dyn Projection>> = vec![timeline.clone()];
    let progress = Progress::new(db.pool.clone(), &projections);
    let settings = ProjectorSettings {
        poll_interval: Duration::from_millis(50),
        ..ProjectorSettings::default()
    };
    let supervisor = Arc::new(Supervisor::new(
        db.pool.clone(),
        progress,
        settings,
        projections,
    ));
    supervisor
        .prepare()
        .await
        .expect("preparing the projection");
    let mut conn = db.pool.acquire().await.expect("a connection");
    append_message_event(&mut conn, "m-1", "alice", "hello").await;
    drop(conn);

    let cancel = CancellationToken::new();
    let mut tasks = BackgroundTasks::new(cancel.clone());
    tasks.spawn_projectors(&supervisor);
    let supervision = tokio::spawn(tasks.supervise());
    // The first batch panics (its transaction rolls back with it); the restarted projector
    // applies the event again, this time for good.
    await_projections_at_head(&db.pool, Duration::from_secs(30)).await;
    assert!(
        timeline.applier.panicked.load(Ordering::SeqCst),
        "the projector met the panic before catching up"
    );
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM timeline_v1.messages")
        .fetch_one(&db.pool)
        .await
        .expect("counting the timeline's messages");
    assert_eq!(messages, 1, "the message is in the view exactly once");

    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), supervision)
        .await
        .expect("the tasks stop on shutdown")
        .expect("supervision ends cleanly");
}
