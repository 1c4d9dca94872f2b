//! Liveness, readiness (database, migrations, projections) and the container probe
//! `minitwit healthcheck`, against a real server process.

use std::process::Output;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use test_support::database::TestDatabase;
use test_support::free_port;
use test_support::server_process::ServerProcess;
use test_support::sim_client::assert_no_content;

use crate::MINITWIT;

async fn ready(server: &ServerProcess) -> (StatusCode, Value) {
    let response = reqwest::get(format!("{}/health/ready", server.base_url))
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// Runs `minitwit healthcheck` (with `args`) against `api_addr`.
async fn healthcheck(api_addr: &str, args: &[&str]) -> Output {
    tokio::process::Command::new(MINITWIT)
        .arg("healthcheck")
        .args(args)
        .env("MINITWIT_API_ADDR", api_addr)
        .output()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_healthy_server_is_live_and_ready_and_the_probe_says_so() {
    let db = TestDatabase::create().await;
    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    let live = reqwest::get(format!("{}/health/live", server.base_url))
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.text().await.unwrap(), "ok");
    let (status, body) = ready(&server).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"database": "ok", "migrations": "ok", "projections": "ok"})
    );
    let probe = healthcheck(&server.api_addr, &[]).await;
    assert!(probe.status.success(), "{probe:?}");

    // Nothing listening: the probe fails, saying why.
    let nowhere = healthcheck(&format!("127.0.0.1:{}", free_port()), &["--live"]).await;
    assert!(!nowhere.status.success());
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("asking 127.0.0.1"));
    server.terminate().await;
}

#[tokio::test]
async fn a_stalled_projection_or_a_missing_migration_makes_the_server_unready() {
    let db = TestDatabase::create().await;
    let server = ServerProcess::start_with(
        MINITWIT,
        &[
            ("DATABASE_URL", &db.server_url),
            ("MINITWIT_READY_MAX_PROJECTION_LAG_SECONDS", "1"),
        ],
    )
    .await;
    assert_no_content(server.client().register("a", "a@a", "pw", None).await);
    assert_eq!(ready(&server).await.0, StatusCode::OK);

    // An event the timeline cannot apply: it stops there, and the wait grows.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) VALUES ('message', 'poison', 1, 'MessagePosted', '1.0', '{}', '{}')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..50 {
        last = ready(&server).await;
        if last.0 == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, StatusCode::SERVICE_UNAVAILABLE, "{}", last.1);
    assert_eq!(last.1["database"], "ok");
    let projections = last.1["projections"].as_str().unwrap();
    assert!(
        projections.starts_with("timeline has not applied an event for"),
        "{projections}"
    );
    let probe = healthcheck(&server.api_addr, &[]).await;
    assert!(!probe.status.success());
    assert!(
        String::from_utf8_lossy(&probe.stderr).contains("503"),
        "{probe:?}"
    );
    // Alive all the same: an orchestrator must not restart it for a database-wide stall.
    let live = healthcheck(&server.api_addr, &["--live"]).await;
    assert!(live.status.success(), "{live:?}");

    // A migration this build expects but the database lacks.
    sqlx::query("DELETE FROM events WHERE aggregate_id = 'poison'")
        .execute(&db.pool)
        .await
        .unwrap();
    let newest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = $1")
        .bind(newest)
        .execute(&db.pool)
        .await
        .unwrap();
    let (status, body) = ready(&server).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["migrations"], format!("not applied: [{newest}]"));
    server.terminate().await;
}
