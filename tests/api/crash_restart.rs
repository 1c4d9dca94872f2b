//! Crashes and restarts of the server lose nothing and apply nothing twice. (Crashes of
//! PostgreSQL: `database_outage`.)

use std::sync::Arc;
use std::time::Duration;

use database::roles::SERVER_ROLE;
use projections::timeline::Timeline;
use projections::{Projector, ProjectorSettings};
use tokio_util::sync::CancellationToken;

use reqwest::StatusCode;
use test_support::database::TestDatabase;
use test_support::server_process::ServerProcess;
use test_support::sim_client::{authored, follow_names};
use test_support::views::{
    assert_views_equal_a_rebuild, await_projections_at_head, timeline_checkpoint,
};
use test_support::write_load::WriteLoad;

use crate::MINITWIT;

/// Forty batches: enough that the kill lands mid-stream.
const BACKLOG: i64 = 20_000;

/// A server killed (SIGKILL) while its projector works through a backlog leaves the views
/// exactly at a batch boundary; the next server resumes from that checkpoint.
#[tokio::test]
async fn a_projector_killed_mid_stream_resumes_without_gap_or_duplicate() {
    let db = TestDatabase::create().await;
    append_backlog(&db).await;

    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    for _ in 0..2_000 {
        if timeline_checkpoint(&db.pool).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await;

    let checkpoint = timeline_checkpoint(&db.pool).await;
    let (rows, beyond): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE position > $1) FROM timeline_v1.messages",
    )
    .bind(checkpoint)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        checkpoint > 0 && rows < BACKLOG,
        "killed mid-stream ({rows} of {BACKLOG} projected)"
    );
    assert_eq!(
        beyond, 0,
        "no row of an uncommitted batch survived the kill"
    );
    let committed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position <= $1")
            .bind(checkpoint)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        rows, committed,
        "every event up to the checkpoint is in the view, once"
    );

    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    for _ in 0..600 {
        if timeline_checkpoint(&db.pool).await == BACKLOG {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM timeline_v1.messages")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (rows, distinct),
        (BACKLOG, BACKLOG),
        "all projected, none twice"
    );
    server.terminate().await;
    assert_views_equal_a_rebuild(&db.pool).await;
}

/// A server SIGKILLed while several clients write loses no acknowledged write: restarted on
/// the same database, it shows every one, its views equal a rebuild from the log, and
/// `latest` holds what the last acknowledged write (or a later request) sent.
#[tokio::test]
async fn a_server_killed_under_write_load_loses_no_acknowledged_write() {
    const CLIENTS: usize = 6;
    let db = TestDatabase::create().await;
    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    let load = WriteLoad::start(&server.base_url, CLIENTS);
    load.await_acknowledged(80, Duration::from_secs(60)).await;
    server.kill().await;
    let ledger = load.stop().await;
    let unanswered = ledger
        .attempts
        .iter()
        .filter(|attempt| attempt.status().is_none())
        .count();
    for attempt in ledger.attempts.iter().filter(|a| a.status().is_some()) {
        assert!(
            attempt.acknowledged(),
            "before the kill every write succeeds: {attempt:?}"
        );
    }

    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    await_projections_at_head(&db.pool, Duration::from_secs(60)).await;
    let checked = ledger
        .assert_acknowledged_present(&server.client(), &db.pool)
        .await;
    assert_views_equal_a_rebuild(&db.pool).await;
    let latest = ledger.assert_latest_intact(&server.client()).await;
    server.terminate().await;
    eprintln!(
        "kill -9 under load: {} requests, {unanswered} cut off by the kill, {checked} \
         acknowledged writes checked present after the restart; /latest = {latest}",
        ledger.attempts.len()
    );
}

/// Shutdown stops a projector between batches, not at the end of its backlog.
#[tokio::test]
async fn a_cancelled_projector_stops_between_batches_of_a_backlog() {
    let db = TestDatabase::create().await;
    append_backlog(&db).await;
    let settings = ProjectorSettings {
        batch_size: 100,
        ..ProjectorSettings::default()
    };
    let projector = Projector::new(db.pool.clone(), Arc::new(Timeline), settings);
    projector.prepare().await.unwrap();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(projector.run(cancel.clone()));
    while timeline_checkpoint(&db.pool).await == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cancel.cancel();
    running.await.expect("the projector task");
    let stopped_at = timeline_checkpoint(&db.pool).await;
    assert!(
        stopped_at < BACKLOG,
        "stopped at {stopped_at}, not after all {BACKLOG} events"
    );
}

/// Data and `latest` outlive a restart of the server process.
#[tokio::test]
async fn restarting_the_server_keeps_data_and_latest() {
    let db = TestDatabase::create().await;
    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    write_and_check_sample(&server).await;
    server.terminate().await;

    let server = ServerProcess::start(MINITWIT, &db.server_url).await;
    check_sample(&server).await;
    server.terminate().await;
}

/// With no database URL the server runs its own PostgreSQL in its data directory, connected
/// as the server role; stopping it stops that PostgreSQL, and the next start finds
/// everything again.
#[tokio::test]
async fn the_embedded_database_keeps_data_across_restarts() {
    let data_dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("embedded-{}", uuid::Uuid::new_v4().simple()));
    let data_dir_text = data_dir.to_str().unwrap().to_owned();
    let server =
        ServerProcess::start_with(MINITWIT, &[("MINITWIT_DATA_DIR", &data_dir_text)]).await;
    write_and_check_sample(&server).await;
    // Least privilege holds in the embedded default too: the owner set the schema up, and
    // let go of its connections; the server works as the server role alone.
    assert_eq!(
        crate::least_privilege::roles_connected_to_embedded(&data_dir.join("postgres")).await,
        [SERVER_ROLE]
    );
    server.terminate().await;
    assert!(
        !data_dir.join("postgres/postmaster.pid").exists(),
        "the server stopped the PostgreSQL it started"
    );

    let server =
        ServerProcess::start_with(MINITWIT, &[("MINITWIT_DATA_DIR", &data_dir_text)]).await;
    check_sample(&server).await;
    server.terminate().await;
    std::fs::remove_dir_all(&data_dir).unwrap();
}

/// A backlog of `BACKLOG` messages written straight into the log, as if the projectors had
/// been down.
async fn append_backlog(db: &TestDatabase) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'message', 'backlog-' || i, 1, 'MessagePosted', '1.0', \
                json_build_object('MessagePosted', json_build_object( \
                    'author', 'author ' || (i % 10), 'content', 'message ' || i, \
                    'posted_at', '2026-11-25T12:00:00Z')), '{}' \
         FROM generate_series(1, $1) AS i",
    )
    .bind(BACKLOG)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn write_and_check_sample(server: &ServerProcess) {
    let sim = server.client();
    for name in ["Roger Histand", "b"] {
        let reply = sim.register(name, "x@x", "x", None).await.unwrap();
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
    }
    assert_eq!(
        sim.tweet("Roger Histand", "still here?", None)
            .await
            .unwrap()
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        sim.follow("Roger Histand", "b", Some(42))
            .await
            .unwrap()
            .status,
        StatusCode::NO_CONTENT
    );
    check_sample(server).await;
}

async fn check_sample(server: &ServerProcess) {
    let sim = server.client();
    assert_eq!(sim.latest().await.unwrap(), 42);
    let messages = sim.user_msgs("Roger Histand", None, None).await.unwrap();
    assert_eq!(
        authored(&messages.body),
        [("Roger Histand".to_owned(), "still here?".to_owned())]
    );
    let follows = sim.follows("Roger Histand", None, None).await.unwrap();
    assert_eq!(follow_names(&follows.body), ["b"]);
}
