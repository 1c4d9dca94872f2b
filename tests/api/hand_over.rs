//! Events a writer hands over to the projectors of its own process are applied without being
//! read back, but only when the log shows they are all there is: an event another writer
//! appended among them is never stepped over.

use std::sync::Arc;

use database::event_log::{self, NewEvent};
use projections::timeline::Timeline;
use projections::{Progress, Projection, Projector, ProjectorSettings};
use test_support::database::TestDatabase;
use test_support::views::{append_message_event, timeline_checkpoint};

fn posted(author: &str, content: &str) -> NewEvent {
    NewEvent {
        event_type: "MessagePosted".to_owned(),
        event_version: "1.0".to_owned(),
        payload: serde_json::to_value(domain::MessageEvent::MessagePosted {
            author: author.to_owned(),
            content: content.to_owned(),
            posted_at: chrono::Utc::now(),
        })
        .expect("serialising an event"),
        metadata: serde_json::json!({}),
    }
}

#[tokio::test]
async fn a_handed_over_batch_never_steps_over_another_writers_event() {
    let db = TestDatabase::create().await;
    let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(Timeline)];
    let progress = Progress::new(db.pool.clone(), &projections);
    let projector = Projector::new(
        db.pool.clone(),
        projections[0].clone(),
        ProjectorSettings::default(),
    )
    .reporting_to(&progress);
    projector.prepare().await.expect("preparing the timeline");

    // Another process's writer appends first; nothing of it is handed over here.
    let mut conn = db.pool.acquire().await.expect("a connection");
    let foreign = append_message_event(&mut conn, "foreign", "bob", "from elsewhere").await;
    // Then this process's writer appends and hands its event over.
    let ours = event_log::append(
        &mut *conn,
        "message",
        "ours",
        0,
        vec![posted("alice", "from here")],
        None,
    )
    .await
    .expect("appending")
    .expect("a new stream");
    drop(conn);
    let our_position = ours[0].position.global_position;
    assert!(our_position > foreign);
    progress.hand_over("message", ours);

    let applied = projector.catch_up().await.expect("catching up");
    assert_eq!(applied, 2, "both events are applied, the foreign one too");
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT message_id FROM timeline_v1.messages ORDER BY message_id")
            .fetch_all(&db.pool)
            .await
            .expect("reading the timeline");
    assert_eq!(ids, ["foreign", "ours"]);
    assert_eq!(timeline_checkpoint(&db.pool).await, our_position);
}
