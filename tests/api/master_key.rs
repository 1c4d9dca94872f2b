//! Key separation: the master key wraps every person's data key, and a server refuses to
//! start with a wrong, missing or malformed one — with a message that says which — rather
//! than fail on every personal field, or show anything it could not open. A server given the
//! key in a file (the secret's `*_FILE` form) reads everyone's data as before. Replicas making
//! one person's first key at once agree on it.

use std::time::Duration;

use database::sealing::{self, EventIdentity, MasterKey};
use test_support::app::{refusal_to_start_with, spawn_app, spawn_app_on_configured, TestApp};
use test_support::database::{TestDatabase, TEST_MASTER_KEY};
use test_support::sim_client::{assert_no_content, authored};
use test_support::web_client::WebClient;

/// A database whose data keys the test master key wrapped: one user, one post.
async fn database_with_keys() -> TestDatabase {
    let app = spawn_app().await;
    let sim = app.client();
    assert_no_content(
        sim.register("alice", "alice@example.org", "secret", None)
            .await,
    );
    assert_no_content(sim.tweet("alice", "sealed with alice's key", None).await);
    app.stop().await
}

#[tokio::test]
async fn a_wrong_missing_or_malformed_master_key_stops_the_server_from_starting() {
    let db = database_with_keys().await;

    let other = MasterKey::generate_base64();
    let refused = refusal_to_start_with(&db.server_url, |config| {
        config.database.master_key = Some(other);
    })
    .await;
    assert!(
        refused.contains("master key does not match"),
        "a wrong key: {refused}"
    );

    let refused = refusal_to_start_with(&db.server_url, |config| {
        config.database.master_key = None;
    })
    .await;
    assert!(
        refused.contains("no master key") && refused.contains("MINITWIT_MASTER_KEY_FILE"),
        "no key: {refused}"
    );

    let refused = refusal_to_start_with(&db.server_url, |config| {
        config.database.master_key = Some("too short".to_owned());
    })
    .await;
    assert!(
        refused.contains("32 random bytes"),
        "a malformed key: {refused}"
    );

    // The right key, from a file as a secret holds it (with the line break `echo` leaves).
    let file = std::env::temp_dir().join(format!("master-key-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, format!("{TEST_MASTER_KEY}\n")).unwrap();
    let app = spawn_app_on_with_key_file(db, &file).await;
    let listing = app
        .client()
        .user_msgs("alice", Some(-1), None)
        .await
        .unwrap();
    assert_eq!(
        authored(&listing.body),
        [("alice".to_owned(), "sealed with alice's key".to_owned())]
    );
    WebClient::new(&app.web_url)
        .login("alice", "secret")
        .await
        .assert_contains("You were logged in");
    std::fs::remove_file(file).unwrap();
}

/// A server on `db` given the master key through `file` only.
async fn spawn_app_on_with_key_file(db: TestDatabase, file: &std::path::Path) -> TestApp {
    spawn_app_on_configured(db, |config| {
        config.database.master_key = None;
        config.database.master_key_file = Some(file.to_owned());
    })
    .await
}

/// An event sealed for someone who has no key (a log restored without its keys) is never
/// shown as text: the projector stops at it and says why, and the API serves nothing of it.
#[tokio::test]
async fn a_field_that_cannot_be_opened_stops_the_projector_instead_of_being_shown() {
    let app = spawn_app().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) \
         VALUES ('message', 'no-key', 1, 'MessagePosted', '1.0', \
                 '{\"MessagePosted\": {\"author\": \"ghost\", \
                   \"content\": {\"sealed\": \"AAAA\", \"key\": \"ghost\"}, \
                   \"posted_at\": \"2026-12-01T10:00:00Z\"}}', '{}')",
    )
    .execute(&app.db.pool)
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let error = loop {
        let error: Option<String> = sqlx::query_scalar(
            "SELECT last_error FROM projection_checkpoints \
             WHERE projection = 'timeline' AND state = 'active'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        if let Some(error) = error {
            break error;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the timeline projector went on past a field it could not open"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(error.contains("no data key for \"ghost\""), "{error}");
    let public = app.client().public_msgs(Some(-1), None).await.unwrap();
    assert!(authored(&public.body).is_empty(), "{:?}", public.body);
}

/// Writers on several replicas sealing a person's first events at once all end up with the
/// one key that was stored (each keyring here is a replica's: nothing kept in common but the
/// database), so whatever any of them sealed opens with it.
#[tokio::test]
async fn writers_making_a_persons_first_key_at_once_all_use_the_stored_one() {
    let db = TestDatabase::create().await;
    let mut replicas = Vec::new();
    for _ in 0..16 {
        replicas.push(db.keys().await);
    }
    let made = futures_util::future::join_all(
        replicas.iter().map(|keys| keys.key_for_sealing("newcomer")),
    )
    .await;
    let identity = EventIdentity {
        aggregate_type: "user",
        aggregate_id: "newcomer",
        sequence: 1,
    };
    let reader = db.keys().await;
    for key in made {
        let key = key.expect("every writer gets the key");
        let mut payload = serde_json::json!({"EmailChanged": {"email": "n@example.org"}});
        sealing::seal_fields(&mut payload, identity, &["email"], "newcomer", &key);
        reader.open_payload(identity, &mut payload).await.unwrap();
        assert_eq!(payload["EmailChanged"]["email"], "n@example.org");
    }
}
