//! Forgetting a person (`minitwit-replay forget`): afterwards nothing they wrote or gave is
//! readable — not in the database (all of it, as `pg_dump` copies it), not in an export taken
//! before — while the log only grew, the views equal a rebuild, and everyone else's data is
//! intact. Personal fields an older build left in plain text are sealed by `migrate`, or
//! erased by `forget`; and backups' keys files lose the forgotten person's key at the next
//! backup.

use reqwest::StatusCode;
use serde_json::json;
use test_support::app::{spawn_app, TestApp};
use test_support::sim_client::{assert_no_content, authored};
use test_support::views::{assert_views_equal_a_rebuild, await_projections_at_head};
use test_support::web_client::WebClient;

use crate::tool::{run_ok, scratch_path};

const ALICE_PASSWORD: &str = "alice's password";
const BOB_PASSWORD: &str = "bob's password";

async fn event_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The database as `pg_dump` writes it, once the views hold everything in the log: the
/// servers' projectors apply a forgetting's events in moments, and the admin tool does not
/// wait for them.
async fn dump_once_projected(app: &TestApp) -> String {
    await_projections_at_head(&app.db.pool, PROJECTED_WITHIN).await;
    app.db.dump().await
}

/// How long the views may take to reach the log's head.
const PROJECTED_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

async fn head(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn after_forgetting_nothing_of_the_person_is_readable_and_everyone_else_is_intact() {
    let app = spawn_app().await;
    let sim = app.client();
    // Texts found nowhere but where this test put them.
    let marker = uuid::Uuid::new_v4().simple().to_string();
    let email = format!("alice.{marker}@example.org");
    let posts = [
        format!("first post {marker}"),
        format!("second post {marker}"),
    ];
    let whisper = format!("a private word {marker}");
    let answer = format!("an answer from bob {marker}");
    let bobs_post = format!("bob's own post {marker}");

    assert_no_content(sim.register("alice", &email, ALICE_PASSWORD, None).await);
    assert_no_content(
        sim.register("bob", "bob@example.org", BOB_PASSWORD, None)
            .await,
    );
    for post in &posts {
        assert_no_content(sim.tweet("alice", post, None).await);
    }
    assert_no_content(sim.tweet("bob", &bobs_post, None).await);
    assert_no_content(sim.follow("alice", "bob", None).await);
    assert_no_content(sim.follow("bob", "alice", None).await);
    let alice = WebClient::new(&app.web_url);
    alice.login("alice", ALICE_PASSWORD).await;
    alice
        .post_json("/chat/with/bob", &json!({ "content": whisper }))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    let bob = WebClient::new(&app.web_url);
    bob.login("bob", BOB_PASSWORD).await;
    bob.post_json("/chat/with/alice", &json!({ "content": answer }))
        .await
        .assert_status(StatusCode::NO_CONTENT);
    bob.get("/messages/alice").await.assert_contains(&whisper);

    let export = scratch_path("forget", "before.jsonl");
    run_ok(&app.db.url, &["export", export.to_str().unwrap()]).await;
    let before = event_count(&app.db.pool).await;
    let head_before = head(&app.db.pool).await;
    // Sealed from the start: not even the live database holds the person in plain text
    // outside the views, which are what is about to be dropped.
    let exported = std::fs::read_to_string(&export).unwrap();
    let secrets = [
        email.as_str(),
        posts[0].as_str(),
        posts[1].as_str(),
        whisper.as_str(),
    ];
    for secret in secrets {
        assert!(!exported.contains(secret), "{secret:?} in the export");
    }

    let forgot = run_ok(&app.db.url, &["forget", "alice", "--yes"]).await;
    assert!(forgot.contains("forgotten"), "{forgot}");
    assert!(forgot.contains("2 messages removed"), "{forgot}");

    let dump = dump_once_projected(&app).await;
    for secret in secrets {
        assert!(!dump.contains(secret), "{secret:?} in the database's dump");
    }
    // Bob's answer is his, and his views keep it: the dump does hold what it should.
    assert!(
        dump.contains(&answer),
        "bob's answer in his conversation's view"
    );
    let after = event_count(&app.db.pool).await;
    assert!(
        after > before,
        "the log only grows: {before} events, then {after}"
    );
    let unchanged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position <= $1")
            .bind(head_before)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(unchanged, before, "no event was deleted");
    assert_views_equal_a_rebuild(&app.db.pool).await;

    // Everyone else's views are intact; the person's name stays taken.
    let public = sim.public_msgs(Some(-1), None).await.unwrap();
    assert_eq!(
        authored(&public.body),
        [("bob".to_owned(), bobs_post.clone())]
    );
    let bobs = sim.user_msgs("bob", Some(-1), None).await.unwrap();
    assert_eq!(authored(&bobs.body), [("bob".to_owned(), bobs_post)]);
    let conversation = bob.get("/messages/alice").await;
    conversation.assert_contains("message removed");
    conversation.assert_contains(&answer);
    conversation.assert_lacks(&whisper);
    assert_eq!(
        sim.register("alice", "someone.else@example.org", "x", None)
            .await
            .unwrap()
            .status,
        StatusCode::BAD_REQUEST,
        "the name stays taken"
    );
    // Signing in as the forgotten person is over, and so is their session.
    alice.get("/").await.assert_lacks("sign out [alice]");
    WebClient::new(&app.web_url)
        .login("alice", ALICE_PASSWORD)
        .await
        .assert_contains("Invalid username");

    // A post that raced the forgetting (its author's check passed on another replica just
    // before), sealed with the key now deleted, leaves no empty message in the views.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) VALUES ('message', $1, 1, 'MessagePosted', '1.0', $2, '{}')",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(json!({"MessagePosted": {"author": "alice",
                 "content": {"sealed": "AAAA", "key": "alice"},
                 "posted_at": "2026-12-04T12:00:00Z"}}))
    .execute(&app.db.pool)
    .await
    .unwrap();
    await_projections_at_head(&app.db.pool, PROJECTED_WITHIN).await;
    let public = sim.public_msgs(Some(-1), None).await.unwrap();
    assert_eq!(authored(&public.body).len(), 1, "{:?}", public.body);
    assert_views_equal_a_rebuild(&app.db.pool).await;
    let after = event_count(&app.db.pool).await;

    // Forgetting again finishes what is left, the raced post's removal, and nothing else.
    let again = run_ok(&app.db.url, &["forget", "alice", "--yes"]).await;
    assert!(again.contains("was gone already"), "{again}");
    assert_eq!(event_count(&app.db.pool).await, after + 1);
}

/// Events an older build wrote hold personal fields in plain text: `migrate` seals them with
/// their people's keys (the views read the same), and `forget` erases a forgotten person's.
#[tokio::test]
async fn personal_fields_left_in_plain_text_are_sealed_by_migrate_and_erased_by_forget() {
    let app = spawn_app().await;
    let sim = app.client();
    let marker = uuid::Uuid::new_v4().simple().to_string();
    assert_no_content(sim.register("carol", "carol@example.org", "pw", None).await);
    // As a build from before sealing wrote them: a registration and a post, in plain text.
    for (aggregate_type, id, event_type, payload) in [
        (
            "user",
            "dave".to_owned(),
            "UserRegistered",
            json!({"UserRegistered": {"username": "dave", "email": format!("dave.{marker}@example.org"),
                   "password_hash": "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
                   "registered_at": "2026-12-01T10:00:00Z"}}),
        ),
        (
            "message",
            uuid::Uuid::new_v4().to_string(),
            "MessagePosted",
            json!({"MessagePosted": {"author": "dave", "content": format!("dave's post {marker}"),
                   "posted_at": "2026-12-01T10:01:00Z"}}),
        ),
        (
            "message",
            uuid::Uuid::new_v4().to_string(),
            "MessagePosted",
            json!({"MessagePosted": {"author": "carol", "content": format!("carol's post {marker}"),
                   "posted_at": "2026-12-01T10:02:00Z"}}),
        ),
    ] {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) VALUES ($1, $2, 1, $3, '1.0', $4, '{}')",
        )
        .bind(aggregate_type)
        .bind(id)
        .bind(event_type)
        .bind(payload)
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
    await_projections_at_head(&app.db.pool, PROJECTED_WITHIN).await;
    assert!(app
        .db
        .dump()
        .await
        .contains(&format!("carol's post {marker}")));

    let migrated = run_ok(&app.db.url, &["migrate"]).await;
    assert!(migrated.contains("3 events sealed"), "{migrated}");
    let log: String = sqlx::query_scalar("SELECT string_agg(payload::text, ' ') FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert!(!log.contains(&marker), "plain text left in the log: {log}");
    // The views read the same from the sealed log.
    assert_views_equal_a_rebuild(&app.db.pool).await;
    let carols = sim.user_msgs("carol", Some(-1), None).await.unwrap();
    assert_eq!(
        authored(&carols.body),
        [("carol".to_owned(), format!("carol's post {marker}"))]
    );

    // Another plain-text post of dave's, as an older replica might write during an
    // upgrade, is erased when dave is forgotten.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) VALUES ('message', $1, 1, 'MessagePosted', '1.0', $2, '{}')",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(
        json!({"MessagePosted": {"author": "dave", "content": format!("late post {marker}"),
                 "posted_at": "2026-12-01T10:03:00Z"}}),
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let forgot = run_ok(&app.db.url, &["forget", "dave", "--yes"]).await;
    assert!(forgot.contains("1 fields in plain text erased"), "{forgot}");
    let dump = dump_once_projected(&app).await;
    assert!(!dump.contains(&format!("dave.{marker}")), "dave's email");
    assert!(!dump.contains(&format!("late post {marker}")));
    assert!(!dump.contains(&format!("dave's post {marker}")));
    assert_views_equal_a_rebuild(&app.db.pool).await;
}

/// A backup's keys file holds the keys; the next backup after a forgetting removes the
/// forgotten person's key from every keys file it keeps, so an old backup restored later
/// does not bring them back.
#[tokio::test]
async fn the_next_backup_removes_a_forgotten_persons_key_from_the_older_backups() {
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["erin", "frank"] {
        assert_no_content(
            sim.register(name, &format!("{name}@example.org"), "pw", None)
                .await,
        );
    }
    let folder = scratch_path("forget", "backups").with_extension("d");
    let folder_arg = folder.to_str().unwrap();
    run_ok(&app.db.url, &["backup", folder_arg]).await;
    let keys_file = |folder: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.to_string_lossy().ends_with(".keys.jsonl"))
            .collect();
        names.sort();
        names
    };
    let first = keys_file(&folder).remove(0);
    let holds_key = |text: &str, name: &str| {
        text.lines().any(|line| {
            let line: serde_json::Value = serde_json::from_str(line).unwrap();
            line["subject"] == name && line["wrapped_key"].is_string()
        })
    };
    let before = std::fs::read_to_string(&first).unwrap();
    assert!(holds_key(&before, "erin") && holds_key(&before, "frank"));

    run_ok(&app.db.url, &["forget", "erin", "--yes"]).await;
    let output = run_ok(&app.db.url, &["backup", folder_arg]).await;
    assert!(
        output.contains("removed forgotten people's keys from"),
        "{output}"
    );
    for file in keys_file(&folder) {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !holds_key(&text, "erin"),
            "erin's key in {}",
            file.display()
        );
        assert!(
            holds_key(&text, "frank"),
            "frank's key in {}",
            file.display()
        );
    }
}
