//! The log is read in transaction order, so an event whose transaction took an earlier
//! `global_position` but committed later is still projected — the classic way a naive
//! `global_position > checkpoint` reader loses events.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{append_message_event, authored, spawn_app, timeline_checkpoint};

#[tokio::test]
async fn an_event_committed_after_a_later_position_is_still_projected() {
    let app = spawn_app().await;
    let sim = app.client();
    sim.register("a", "a@a", "x", None).await.unwrap();

    // The early transaction takes its position first and stays open.
    let mut early = app.db.pool.begin().await.unwrap();
    let early_position = append_message_event(
        &mut early,
        "early-message",
        "a",
        "written first, committed last",
    )
    .await;

    // A later write commits while the early one is still open. Its 204 waits for the views,
    // which must not move past the still-open transaction.
    let late_writer = {
        let sim = sim.clone();
        tokio::spawn(async move {
            sim.tweet("a", "written second, committed first", None)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late_position: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE event_type = 'MessagePosted' AND aggregate_id <> 'early-message'",
    )
    .fetch_one(&app.db.pool)
    .await
    .expect("the later event is committed and visible");
    assert!(
        late_position > early_position,
        "the later write took the later position"
    );
    assert!(
        timeline_checkpoint(&app.db.pool).await < early_position,
        "the projector waits behind the open transaction instead of skipping ahead"
    );
    assert!(
        !late_writer.is_finished(),
        "the later write is not acknowledged before it is visible"
    );

    early.commit().await.unwrap();
    let reply = late_writer.await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT);

    let listing = sim.user_msgs("a", None, None).await.unwrap();
    let mut contents: Vec<String> = authored(&listing.body)
        .into_iter()
        .map(|(_, content)| content)
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        [
            "written first, committed last",
            "written second, committed first"
        ]
    );
    app.stop().await;
}
