//! The log is read in transaction order, so an event whose transaction took an earlier
//! `global_position` but committed later is still projected — the classic way a naive
//! `global_position > checkpoint` reader loses events.

use std::time::Duration;

use reqwest::StatusCode;
use test_support::app::{spawn_app, spawn_app_with};
use test_support::sim_client::{assert_no_content, authored};
use test_support::views::{append_message_event, timeline_checkpoint};

#[tokio::test]
async fn an_event_committed_after_a_later_position_is_still_projected() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("a", "a@a", "x", None).await);

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
    // The test cluster is shared and the horizon is cluster-wide, so the transaction is held
    // only until the later event has committed, not for a fixed time.
    let late_position = loop {
        let committed: Option<i64> = sqlx::query_scalar(
            "SELECT global_position FROM events \
             WHERE event_type = 'MessagePosted' AND aggregate_id <> 'early-message'",
        )
        .fetch_optional(&app.db.pool)
        .await
        .unwrap();
        match committed {
            Some(position) => break position,
            None => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    };
    // Give the projector a few chances to (wrongly) move past the open transaction.
    tokio::time::sleep(Duration::from_millis(30)).await;
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

/// Nothing announces that an unrelated transaction holding the horizon back has ended; the
/// projector must notice by itself, not at its next poll. With polling at once a minute, a
/// write stalled that way is still acknowledged and readable soon after the blocker ends.
#[tokio::test]
async fn a_write_held_back_by_an_unrelated_transaction_is_projected_when_it_ends() {
    let app = spawn_app_with(|config| config.projector_poll_ms = 60_000).await;
    let sim = app.client();
    assert_no_content(sim.register("a", "a@a", "x", None).await);

    let mut unrelated = app.db.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *unrelated)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let writer = {
        let sim = sim.clone();
        tokio::spawn(async move { sim.tweet("a", "held back", None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!writer.is_finished(), "the write waits for the views");
    unrelated.commit().await.unwrap();

    let reply = writer.await.unwrap().unwrap();
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    // The read-your-writes bound is 10 s and the poll a minute: only noticing the end of
    // the blocker by itself gets the answer back this soon.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
    let listing = sim.user_msgs("a", None, None).await.unwrap();
    assert_eq!(
        authored(&listing.body),
        [("a".to_owned(), "held back".to_owned())]
    );
    app.stop().await;
}
