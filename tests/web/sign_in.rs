//! Signing in with passwords from elsewhere (werkzeug's hashes, as a migrated MiniTwit has
//! them), the upgrade of such hashes, and the budgets of sign-in and registration attempts:
//! per address, shared by replicas, and never locking an account's owner out.

use std::time::Duration;

use reqwest::StatusCode;
use sqlx::PgPool;
use test_support::app::{spawn_app, spawn_app_with};
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::assert_no_content;
use test_support::web_client::WebClient;

use crate::MINITWIT;

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
            sqlx::query_scalar("SELECT password_hash FROM accounts_v2.users WHERE username = $1")
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
        let upgrades: Vec<_> =
            test_support::log::opened_events(&app.db.pool, "PasswordHashUpgraded")
                .await
                .into_iter()
                .filter(|upgrade| upgrade.aggregate_id == username)
                .collect();
        assert_eq!(upgrades.len(), 1, "{username}");
        let new_hash = upgrades[0].fields["password_hash"]
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
async fn sign_in_attempts_are_limited_per_address_but_the_api_never_is() {
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
async fn budgets_hold_across_replicas_and_guesses_from_one_address_never_lock_the_owner_out() {
    let db = TestDatabase::create().await;
    let env = [
        ("DATABASE_URL", db.server_url.as_str()),
        ("MINITWIT_LOGIN_ATTEMPTS_PER_MINUTE", "6"),
        ("MINITWIT_CLIENT_IP_HEADER", "x-real-ip"),
    ];
    let first = ServerProcess::start_with(MINITWIT, &env).await;
    let second = ServerProcess::start_with(MINITWIT, &env).await;
    assert_no_content(first.client().register("target", "t@x", "pw", None).await);
    let from = |server: &ServerProcess, address: &str| {
        WebClient::new(&server.web_url).with_header("x-real-ip", address)
    };
    // A guesser going from replica to replica: the first three wrong passwords are free,
    // the fourth makes the next guess from that address wait — on every replica.
    for (n, server) in [&first, &second, &first, &second].into_iter().enumerate() {
        let page = from(server, "192.0.2.1")
            .login("target", &format!("guess {n}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "guess {n}");
        page.assert_contains("Invalid password");
    }
    for server in [&first, &second] {
        let waiting = from(server, "192.0.2.1").login("target", "pw").await;
        assert_eq!(waiting.status, StatusCode::TOO_MANY_REQUESTS);
        waiting.assert_contains("Too many sign-in attempts; please try again in");
        assert_eq!(waiting.header("retry-after"), Some("1"));
    }
    // Meanwhile the owner, from another address, signs in at once, through either replica.
    for server in [&first, &second] {
        from(server, "198.51.100.7")
            .login("target", "pw")
            .await
            .assert_contains("You were logged in");
    }

    // However many guesses came before, a wait never exceeds a minute: a slowdown, not a lock.
    sqlx::query(
        "UPDATE sign_in_failures SET failures = 1000, retry_at = now() - interval '1 second' \
         WHERE username = 'target'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let page = from(&first, "192.0.2.1")
        .login("target", "guess 1001")
        .await;
    page.assert_contains("Invalid password");
    let waiting = from(&second, "192.0.2.1").login("target", "pw").await;
    assert_eq!(waiting.status, StatusCode::TOO_MANY_REQUESTS);
    let seconds: u64 = waiting.header("retry-after").unwrap().parse().unwrap();
    assert!((50..=60).contains(&seconds), "{seconds}");

    // The address's own budget (six a minute, wrong or right) is one across replicas: the
    // guesser has spent five of it, so one more attempt from there, on any username, and no
    // second.
    from(&second, "192.0.2.1")
        .login("someone else", "x")
        .await
        .assert_contains("Invalid username");
    let spent = from(&first, "192.0.2.1").login("another", "x").await;
    assert_eq!(spent.status, StatusCode::TOO_MANY_REQUESTS);
    first.terminate().await;
    second.terminate().await;
}

#[tokio::test]
async fn browser_registrations_are_limited_per_address_but_the_apis_are_not() {
    let app = spawn_app_with(|config| {
        config.registrations_per_hour = 2;
        config.client_ip_header = Some("x-real-ip".to_owned());
    })
    .await;
    let from = |address: &str| WebClient::new(&app.web_url).with_header("x-real-ip", address);
    for name in ["first", "second"] {
        from("192.0.2.1")
            .register(name, "pw", None, None)
            .await
            .assert_contains("You were successfully registered");
    }
    let refused = from("192.0.2.1").register("third", "pw", None, None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    refused.assert_contains("Too many sign-ups from your address; please try again in");
    refused.assert_contains("value=\"third\"");
    let seconds: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1800).contains(&seconds), "{seconds}");
    from("198.51.100.7")
        .register("third", "pw", None, None)
        .await
        .assert_contains("You were successfully registered");
    // The simulator registers as much as it likes.
    for index in 0..3 {
        assert_no_content(
            app.client()
                .register(&format!("sim {index}"), "s@x", "pw", None)
                .await,
        );
    }
    app.stop().await;
}
