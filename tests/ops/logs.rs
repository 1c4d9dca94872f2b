//! Logs as a log collector gets them (`LOG_FORMAT=json`): one JSON object per line, one line
//! per request carrying the request id that is also returned as a header and stored in the
//! metadata of the events the request caused — and never a password, a hash or a session.

use std::time::Duration;

use serde_json::Value;
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::assert_no_content;

use crate::MINITWIT;

const PASSWORD: &str = "Pa55-never-logged!";

#[tokio::test]
async fn json_logs_have_a_line_per_request_with_its_id_and_no_secrets() {
    let db = TestDatabase::create().await;
    let server = ServerProcess::start_with(
        MINITWIT,
        &[
            ("DATABASE_URL", &db.server_url),
            ("LOG_FORMAT", "json"),
            ("RUST_LOG", "info"),
        ],
    )
    .await;
    let sim = server.client();
    assert_no_content(sim.register("logged", "l@x", PASSWORD, None).await);
    let tweet = reqwest::Client::new()
        .post(format!("{}/msgs/logged", server.base_url))
        .header("Authorization", test_support::sim_client::SIMULATOR_AUTH)
        .header("x-request-id", "trace-me-42")
        .body(r#"{"content": "traced"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(tweet.status(), reqwest::StatusCode::NO_CONTENT);
    assert_eq!(
        tweet.headers()["x-request-id"],
        "trace-me-42",
        "kept from the client"
    );
    let generated = sim.public_msgs(None, None).await.unwrap();
    assert_eq!(generated.status, reqwest::StatusCode::OK);
    // Signing in through the pages: the form carries the password, the answer a session.
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/login", server.web_url))
        .form(&[("username", "logged"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::FOUND, "signed in");
    let session = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    let session_value = session
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let lines = server.logs();
    let entries: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let finished: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["message"] == "finished processing request")
        // The harness polls /latest until the server answers.
        .filter(|entry| entry["span"]["route"] != "/latest")
        .collect();
    // One line per request: register, tweet, listing, login.
    assert_eq!(finished.len(), 4, "{finished:#?}");
    for entry in &finished {
        let span = &entry["span"];
        assert!(
            span["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{entry}"
        );
        assert!(
            span["route"].is_string() && span["method"].is_string(),
            "{entry}"
        );
        assert!(
            entry["status"].is_number() && entry["latency"].is_string(),
            "{entry}"
        );
    }
    let traced = finished
        .iter()
        .find(|entry| entry["span"]["request_id"] == "trace-me-42")
        .expect("the tweet's line");
    assert_eq!(traced["span"]["route"], "/msgs/{username}");
    assert_eq!(traced["status"], 204);
    // The event the tweet caused names the request.
    let metadata: Value =
        sqlx::query_scalar("SELECT metadata::jsonb FROM events WHERE event_type = 'MessagePosted'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(metadata["request_id"], "trace-me-42");

    let hash: String = sqlx::query_scalar("SELECT password_hash FROM accounts_v2.users")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let everything = lines.join("\n");
    for secret in [
        PASSWORD,
        &hash,
        &session_value,
        "c2ltdWxhdG9yOnN1cGVyX3NhZmUh",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret:?} appears in the logs"
        );
    }
    // Nor in what clients get back, or in the events' metadata.
    let all_metadata: Vec<String> = sqlx::query_scalar("SELECT metadata::text FROM events")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(all_metadata.iter().all(|text| !text.contains(PASSWORD)));
    server.terminate().await;
}

/// The warning a server on the course's published simulator password logs at start.
const PUBLISHED_PASSWORD_WARNING: &str = "accepts the course's published password";

#[tokio::test]
async fn a_server_left_on_the_courses_password_warns_at_start_and_one_with_its_own_does_not() {
    let db = TestDatabase::create().await;
    for (password, warns) in [(None, true), (Some("a secret of our own"), false)] {
        let mut env = vec![("DATABASE_URL", db.server_url.as_str())];
        if let Some(password) = password {
            env.push(("MINITWIT_SIMULATOR_PASSWORD", password));
        }
        let warned = warned_at_start(&env, PUBLISHED_PASSWORD_WARNING).await;
        assert_eq!(warned, warns, "password {password:?}");
    }
}

/// The warning a server logs at start when its database role could rewrite the log.
const OWNER_ROLE_WARNING: &str = "may change or delete events";

#[tokio::test]
async fn a_server_on_the_owners_role_warns_at_start_and_one_on_the_server_role_does_not() {
    let db = TestDatabase::create().await;
    for (url, warns) in [(&db.url, true), (&db.server_url, false)] {
        let warned = warned_at_start(&[("DATABASE_URL", url)], OWNER_ROLE_WARNING).await;
        assert_eq!(warned, warns, "{url}");
    }
}

/// Whether a server started with `env` (over the test settings) logs `warning` at start.
async fn warned_at_start(env: &[(&str, &str)], warning: &str) -> bool {
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "warn"));
    let server = ServerProcess::start_with(MINITWIT, &env).await;
    let logs = server.logs();
    server.terminate().await;
    let warned = logs.iter().any(|line| line.contains(warning));
    if !warned {
        eprintln!("no `{warning}` in:\n{}", logs.join("\n"));
    }
    warned
}
