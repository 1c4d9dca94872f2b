//! Moderation through the tool: flagged messages leave every timeline, the API and the live
//! views, unflagged ones come back, each decision is an event with who and why, and unknown
//! ids are reported, not "flagged". Plus `status`, and a version-1 moderation event from an
//! older build read as the current version by every reader.

use reqwest::StatusCode;
use serde_json::Value;

use test_support::app::spawn_app;
use test_support::sim_client::{assert_no_content, authored};
use test_support::web_client::WebClient;

use crate::tool::{run, run_ok};

/// The id of the message whose content is `content`.
async fn message_id(pool: &sqlx::PgPool, content: &str) -> String {
    test_support::log::opened_events(pool, "MessagePosted")
        .await
        .into_iter()
        .find(|posted| posted.fields["content"] == content)
        .expect("the message is in the log")
        .aggregate_id
}

#[tokio::test]
async fn flagging_and_unflagging_by_id_hide_and_restore_a_message_everywhere() {
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["author", "reader"] {
        assert_no_content(sim.register(name, "x@x", "pw", None).await);
    }
    assert_no_content(sim.follow("reader", "author", None).await);
    assert_no_content(sim.tweet("author", "fine", None).await);
    assert_no_content(sim.tweet("author", "spam \u{1b}[2J spam", None).await);
    let spam = message_id(&app.db.pool, "spam \u{1b}[2J spam").await;

    let listing = run_ok(&app.db.url, &["messages", "--author", "author"]).await;
    assert!(listing.contains(&spam), "{listing}");
    assert!(
        listing.contains("spam \\u{1b}[2J spam"),
        "control characters escaped: {listing}"
    );
    assert!(!listing.contains('\u{1b}'));

    let flagged = run_ok(
        &app.db.url,
        &[
            "flag",
            &spam,
            "--reason",
            "advertising",
            "--by",
            "moderator mo",
        ],
    )
    .await;
    assert_eq!(
        flagged.trim(),
        format!("{spam}: flagged; hidden from every timeline and the API")
    );
    // Gone from the API, the public, the user's and the follower's timelines.
    let contents = |body: &Value| -> Vec<String> {
        authored(body)
            .into_iter()
            .map(|(_, content)| content)
            .collect()
    };
    assert_eq!(
        contents(&sim.public_msgs(None, None).await.unwrap().body),
        ["fine"]
    );
    assert_eq!(
        contents(&sim.user_msgs("author", None, None).await.unwrap().body),
        ["fine"]
    );
    let web = WebClient::new(&app.web_url);
    web.login("reader", "pw").await;
    for path in ["/", "/public", "/author"] {
        let page = web.get(path).await;
        page.assert_contains("fine");
        page.assert_lacks("spam");
    }
    // The decision is in the log, with who and why.
    let decision: Value = sqlx::query_scalar(
        "SELECT payload::jsonb FROM events WHERE aggregate_id = $1 AND event_type = 'MessageFlagged'",
    )
    .bind(&spam)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        decision["MessageFlagged"]["moderation"],
        serde_json::json!({"moderator": "moderator mo", "reason": "advertising"})
    );
    let flagged_listing = run_ok(&app.db.url, &["messages", "--flagged", "--json"]).await;
    let listed: Value = serde_json::from_str(&flagged_listing).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], spam.as_str());
    assert_eq!(listed[0]["flagged"], true);

    // Again: nothing new is recorded.
    let again = run_ok(&app.db.url, &["flag", &spam]).await;
    assert_eq!(
        again.trim(),
        format!("{spam}: already flagged; nothing recorded")
    );

    let unflagged = run_ok(&app.db.url, &["unflag", &spam, "--reason", "appeal"]).await;
    assert_eq!(unflagged.trim(), format!("{spam}: unflagged; shown again"));
    assert_eq!(
        contents(&sim.user_msgs("author", None, None).await.unwrap().body),
        ["spam \u{1b}[2J spam", "fine"]
    );
    web.get("/").await.assert_contains("spam");
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM events WHERE aggregate_id = $1 ORDER BY sequence",
    )
    .bind(&spam)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(
        events,
        ["MessagePosted", "MessageFlagged", "MessageUnflagged"]
    );
    app.stop().await;
}

#[tokio::test]
async fn unknown_ids_are_reported_and_nothing_is_recorded_for_them() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("author", "x@x", "pw", None).await);
    assert_no_content(sim.tweet("author", "real", None).await);
    let real = message_id(&app.db.pool, "real").await;
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    let output = run(&app.db.url, &["flag", "no-such-id", &real]).await;
    assert_eq!(output.status.code(), Some(1), "an unknown id fails the run");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains("no-such-id: no such message; nothing recorded"),
        "{printed}"
    );
    assert!(printed.contains(&format!("{real}: flagged;")), "{printed}");
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        events_after,
        events_before + 1,
        "only the real id's decision"
    );
    app.stop().await;
}

#[tokio::test]
async fn status_shows_versions_checkpoints_lag_and_the_log() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("a", "x@x", "pw", None).await);
    assert_no_content(sim.tweet("a", "one", None).await);
    assert_no_content(sim.tweet("a", "two", None).await);
    let json = run_ok(&app.db.url, &["status", "--json"]).await;
    let status: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(status["log"]["events"], 3);
    assert_eq!(status["log"]["head_position"], 3);
    assert!(status["log"]["size_bytes"].as_i64().unwrap() > 0);
    let projections = status["projections"].as_array().unwrap();
    assert_eq!(projections.len(), projections::all().len());
    for version in projections {
        assert_eq!(version["state"], "active");
        assert_eq!(version["lag_events"], 0, "{version}");
        assert!(version["last_error"].is_null());
    }
    let timeline = projections
        .iter()
        .find(|version| version["projection"] == "timeline")
        .expect("the timeline's version");
    assert_eq!(timeline["checkpoint"], 3);

    // A projection that cannot apply an event shows the error and its lag.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) VALUES ('message', 'broken', 1, 'MessagePosted', '1.0', '{}', '{}')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let mut table = String::new();
    for _ in 0..100 {
        table = run_ok(&app.db.url, &["status"]).await;
        if table.contains("cannot decode") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let timeline = table
        .lines()
        .find(|line| line.starts_with("timeline"))
        .unwrap();
    let columns: Vec<&str> = timeline.split_whitespace().collect();
    assert_eq!(
        &columns[..5],
        ["timeline", "1", "active", "3", "1"],
        "{table}"
    );
    assert!(
        timeline.contains("cannot decode MessagePosted v1.0 at position 4"),
        "{table}"
    );
    assert!(
        table.contains("event log: 4 events, head position 4"),
        "{table}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_version_one_moderation_event_is_read_as_the_current_version_everywhere() {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(sim.register("author", "x@x", "pw", None).await);
    assert_no_content(sim.tweet("author", "flagged by an older build", None).await);
    let id = message_id(&app.db.pool, "flagged by an older build").await;
    // As a build before moderation events carried who and why wrote it.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) \
         VALUES ('message', $1, 2, 'MessageFlagged', '1.0', \
                 '{\"MessageFlagged\": {\"flagged_at\": \"2025-01-01T00:00:00Z\"}}', '{}')",
    )
    .bind(&id)
    .execute(&app.db.pool)
    .await
    .unwrap();
    // The projector reads it (the message is hidden)...
    assert_no_content(sim.tweet("author", "a later write", None).await);
    let listing = sim.user_msgs("author", None, None).await.unwrap();
    assert_eq!(listing.status, StatusCode::OK);
    assert_eq!(authored(&listing.body).len(), 1, "{}", listing.body);
    // ...a rebuild reads it the same way...
    let verified = run_ok(&app.db.url, &["verify", "timeline"]).await;
    assert!(verified.contains("identical"), "{verified}");
    // ...and the command side loads the aggregate through it: unflagging is accepted.
    let unflagged = run_ok(&app.db.url, &["unflag", &id]).await;
    assert!(unflagged.contains("unflagged; shown again"), "{unflagged}");
    assert_eq!(
        authored(&sim.user_msgs("author", None, None).await.unwrap().body).len(),
        2
    );
    app.stop().await;
}
