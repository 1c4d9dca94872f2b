//! A process moving to a rebuilt version of a projection: a write waiting for the views
//! while the old version is let go goes on waiting, on the new version, until that one has it.

use std::time::Duration;

use projections::{LogPosition, Progress};
use test_support::database::TestDatabase;

#[tokio::test]
async fn a_write_waiting_on_a_version_being_let_go_waits_on_its_successor() {
    let db = TestDatabase::create().await;
    let progress = Progress::new(db.pool.clone(), &projections::all());
    let written = LogPosition {
        transaction_id: 10,
        global_position: 10,
    };
    let waiting = progress.clone();
    let waiter = tokio::spawn(async move {
        waiting
            .wait_until_applied("message", written, Duration::from_secs(10))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The move: the new version is tracked, then the old one let go.
    progress.start_tracking("timeline", 2);
    progress.read_version("timeline", 2);
    progress.stop_tracking_all_but("timeline", 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "the write waits for version 2 now");
    progress.record("timeline", 2, written);
    let applied = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("the wait ends once version 2 has the write")
        .unwrap()
        .unwrap();
    assert!(applied);
}
