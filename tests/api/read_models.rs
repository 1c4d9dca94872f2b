//! The views serve all three timelines — public, one user's, and "me + whom I follow" —
//! newest first, and a flagged message vanishes from every one of them until unflagged.

use projections::{ReadModels, TimelineScope, TimelineWindow};
use reqwest::StatusCode;
use test_support::app::spawn_app;
use test_support::sim_client::assert_no_content;

/// The contents of the newest `limit` entries of the timeline `scope`.
async fn contents(reads: &ReadModels, scope: TimelineScope<'_>, limit: i64) -> Vec<String> {
    reads
        .timeline(scope, TimelineWindow::Newest, limit)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.content)
        .collect()
}

/// Appends a flag or unflag event to a message's stream, as moderation would.
async fn moderate(pool: &sqlx::PgPool, content: &str, event: domain::MessageEvent) {
    let payload = serde_json::to_value(&event).unwrap();
    use cqrs_es::DomainEvent as _;
    let message_id = test_support::log::opened_events(pool, "MessagePosted")
        .await
        .into_iter()
        .find(|posted| posted.fields["content"] == content)
        .expect("the message is in the log")
        .aggregate_id;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'message', $1, \
                (SELECT max(sequence) + 1 FROM events e WHERE e.aggregate_type = 'message' AND e.aggregate_id = $1), \
                $2, $4, $3, '{}'",
    )
    .bind(message_id)
    .bind(event.event_type())
    .bind(payload)
    .bind(event.event_version())
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn timelines_are_newest_first_and_leave_out_flagged_messages() {
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["me", "friend", "stranger"] {
        assert_no_content(sim.register(name, "x@x", "x", None).await);
    }
    assert_eq!(
        sim.follow("me", "friend", None).await.unwrap().status,
        StatusCode::NO_CONTENT
    );
    for (author, content) in [
        ("me", "mine"),
        ("friend", "friend's"),
        ("stranger", "stranger's"),
        ("friend", "friend's later"),
    ] {
        assert_eq!(
            sim.tweet(author, content, None).await.unwrap().status,
            StatusCode::NO_CONTENT
        );
    }
    let progress =
        projections::Progress::of_active_versions(app.db.pool.clone(), &projections::all())
            .await
            .unwrap();
    let reads = ReadModels::new(app.db.pool.clone(), progress);
    assert_eq!(
        contents(&reads, TimelineScope::Personal("me"), 30).await,
        ["friend's later", "friend's", "mine"]
    );
    assert_eq!(
        contents(&reads, TimelineScope::Author("friend"), 30).await,
        ["friend's later", "friend's"]
    );
    assert_eq!(
        contents(&reads, TimelineScope::Public, 2).await,
        ["friend's later", "stranger's"]
    );

    let now = chrono::Utc::now();
    moderate(
        &app.db.pool,
        "friend's later",
        domain::MessageEvent::MessageFlagged {
            flagged_at: now,
            moderation: domain::Moderation::default(),
        },
    )
    .await;
    // The next acknowledged write is applied after the flag, so the views include it.
    assert_no_content(sim.tweet("stranger", "a later write", None).await);
    assert_eq!(
        contents(&reads, TimelineScope::Personal("me"), 30).await,
        ["friend's", "mine"]
    );
    assert_eq!(
        contents(&reads, TimelineScope::Author("friend"), 30).await,
        ["friend's"]
    );
    assert!(!contents(&reads, TimelineScope::Public, 30)
        .await
        .contains(&"friend's later".to_owned()));
    let api_listing = sim.user_msgs("friend", None, None).await.unwrap();
    assert_eq!(
        api_listing.body.as_array().unwrap().len(),
        1,
        "the API hides it too"
    );

    moderate(
        &app.db.pool,
        "friend's later",
        domain::MessageEvent::MessageUnflagged {
            unflagged_at: now,
            moderation: domain::Moderation::default(),
        },
    )
    .await;
    assert_no_content(sim.tweet("stranger", "another later write", None).await);
    assert_eq!(
        contents(&reads, TimelineScope::Personal("me"), 30).await,
        ["friend's later", "friend's", "mine"],
        "unflagging brings it back in place"
    );
    app.stop().await;
}
