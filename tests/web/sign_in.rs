//! Signing in with passwords from elsewhere (werkzeug's hashes, as a migrated MiniTwit has
//! them), the upgrade of such hashes, and the limit on sign-in attempts.

use std::time::Duration;

use reqwest::StatusCode;
use sqlx::PgPool;
use test_support::app::{spawn_app, spawn_app_with};
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

/// werkzeug 3.1's `generate_password_hash("correct horse", method=...)` (also pinned in the
/// unit tests of `api::passwords`), with few rounds so a debug build checks them quickly.
const WERKZEUG_PBKDF2: &str = "pbkdf2:sha256:1000$WKAYhPFe3hE5ims7$e4c90000cc15b07270ae3f680f0c2ee380c401b482b8e409c3f697cbbcac2c41";
const WERKZEUG_SCRYPT: &str = "scrypt:1024:8:1$BKiWDNYOA1cuRuZL$4358b2131aadf40680f4a77a24b17fec0cc5f08211885c51fa157c70225eaa5459a8ff9acbd96e57ca5be2f121a906bf22e9f6961695c4189f8428ff5b5847a6";
const PASSWORD: &str = "correct horse";

/// Registers `username` with `hash` straight into the log, as a migration from a legacy
/// database does, and waits until the accounts view has it.
async fn register_with_hash(pool: &PgPool, username: &str, hash: &str) {
    let payload = serde_json::json!({"UserRegistered": {
        "username": username,
        "email": format!("{username}@legacy.example"),
        "password_hash": hash,
        "registered_at": "2012-01-01T00:00:00Z",
    }});
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) VALUES ('user', $1, 1, 'UserRegistered', '1.0', $2, '{}')",
    )
    .bind(username)
    .bind(payload)
    .execute(pool)
    .await
    .unwrap();
    assert!(
        stored_hash(pool, username).await.is_some(),
        "the accounts view takes in {username}"
    );
}

/// The accounts view's hash of `username`, waiting a little for it to appear or change.
async fn stored_hash(pool: &PgPool, username: &str) -> Option<String> {
    let mut hash = None;
    for _ in 0..100 {
        hash =
            sqlx::query_scalar("SELECT password_hash FROM accounts_v1.users WHERE username = $1")
                .bind(username)
                .fetch_optional(pool)
                .await
                .unwrap();
        if hash.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hash
}

#[tokio::test]
async fn werkzeug_hashes_sign_in_and_are_upgraded_to_argon2id_by_an_event() {
    let app = spawn_app().await;
    for (username, hash) in [
        ("pbkdf2 user", WERKZEUG_PBKDF2),
        ("scrypt user", WERKZEUG_SCRYPT),
    ] {
        register_with_hash(&app.db.pool, username, hash).await;
        let web = WebClient::new(&app.web_url);
        web.login(username, "wrong horse")
            .await
            .assert_contains("Invalid password");
        assert_eq!(
            stored_hash(&app.db.pool, username).await.as_deref(),
            Some(hash)
        );

        web.login(username, PASSWORD)
            .await
            .assert_contains("You were logged in");
        // The upgrade is an event in the user's stream, and the view follows it.
        let upgrades: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT payload::jsonb FROM events WHERE aggregate_type = 'user' AND aggregate_id = $1 \
             AND event_type = 'PasswordHashUpgraded'",
        )
        .bind(username)
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(upgrades.len(), 1, "{username}");
        let new_hash = upgrades[0]["PasswordHashUpgraded"]["password_hash"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            new_hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{new_hash}"
        );
        assert_eq!(stored_hash(&app.db.pool, username).await, Some(new_hash));

        // The same password still works, now against argon2id, with no further upgrade.
        web.logout().await.assert_redirected_to("/public");
        web.login(username, PASSWORD)
            .await
            .assert_contains("You were logged in");
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'PasswordHashUpgraded'",
        )
        .bind(username)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        assert_eq!(count, 1);
    }
    app.stop().await;
}

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address_and_per_username_but_the_api_never_is() {
    let app = spawn_app_with(|config| config.login_attempts_per_minute = 3).await;
    let sim = app.client();
    assert_no_content(sim.register("target", "t@x", "pw", None).await);
    let guesser = WebClient::new(&app.web_url);
    for guess in ["a", "b", "c"] {
        let page = guesser.login("target", guess).await;
        assert_eq!(page.status, StatusCode::OK);
        page.assert_contains("Invalid password");
    }
    let limited = guesser.login("target", "pw").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    limited.assert_contains("Too many sign-in attempts; please try again in");
    limited.assert_contains("value=\"target\"");

    // Other usernames from the same address are limited too (the address's budget is spent).
    let other = guesser.login("someone else", "x").await;
    assert_eq!(other.status, StatusCode::TOO_MANY_REQUESTS);

    // The simulator's API is never limited: many registrations and reads from the same address.
    for index in 0..10 {
        let reply = sim
            .register(&format!("sim user {index}"), "s@x", "pw", None)
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(
            sim.user_msgs("target", None, None).await.unwrap().status,
            StatusCode::OK
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn behind_a_proxy_each_client_address_has_its_own_budget_but_a_username_has_one() {
    let app = spawn_app_with(|config| {
        config.login_attempts_per_minute = 2;
        config.client_ip_header = Some("x-real-ip".to_owned());
    })
    .await;
    assert_no_content(app.client().register("target", "t@x", "pw", None).await);
    let from = |address: &str| WebClient::new(&app.web_url).with_header("x-real-ip", address);
    // Two addresses, each within its own budget, but together over the username's.
    assert_eq!(
        from("192.0.2.1").login("target", "a").await.status,
        StatusCode::OK
    );
    assert_eq!(
        from("192.0.2.2").login("target", "b").await.status,
        StatusCode::OK
    );
    assert_eq!(
        from("192.0.2.3").login("target", "pw").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A fresh address and a fresh username: allowed.
    assert_eq!(
        from("192.0.2.4").login("nobody", "x").await.status,
        StatusCode::OK
    );
    app.stop().await;
}
