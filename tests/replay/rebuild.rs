//! Rebuilds without downtime: under continuous load no request fails and no read misses its
//! own write, the servers move to the new versions, and the result equals the log; a rebuild
//! killed half-way resumes where it stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use projections::accounts::Accounts;
use projections::Projection as _;
use reqwest::StatusCode;
use sqlx::PgPool;

use test_support::app::{spawn_app, TestApp};
use test_support::sim_client::{assert_no_content, authored, follow_names, SimClient};

use crate::tool::{command, run_ok};

/// `(version, state, checkpoint)` of every version of `projection`.
async fn versions(pool: &PgPool, projection: &str) -> Vec<(i32, String, i64)> {
    sqlx::query_as(
        "SELECT version, state, last_position FROM projection_checkpoints \
         WHERE projection = $1 ORDER BY version",
    )
    .bind(projection)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// `(version, state)` of every version of `projection`.
async fn states(pool: &PgPool, projection: &str) -> Vec<(i32, String)> {
    versions(pool, projection)
        .await
        .into_iter()
        .map(|(version, state, _)| (version, state))
        .collect()
}

/// The states after one rebuild of a projection that had one version.
fn rebuilt_once(projection: &str) -> Vec<(i32, String)> {
    let built = projections::all()
        .iter()
        .find(|known| known.name() == projection)
        .expect("a known projection")
        .version();
    vec![
        (built, "retired".to_owned()),
        (built + 1, "active".to_owned()),
    ]
}

/// Appends `count` posts by `author` straight into the log in one statement: a backlog for
/// rebuilds to chew on. One quick statement, because while a transaction writes events it
/// holds back every projector of the (shared) test cluster.
async fn backlog(pool: &PgPool, author: &str, count: i64) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) \
         SELECT 'message', gen_random_uuid()::text, 1, 'MessagePosted', '1.0', \
                json_build_object('MessagePosted', json_build_object( \
                    'author', $1::text, 'content', 'backlog ' || n, 'posted_at', now())), \
                '{}' \
         FROM generate_series(1, $2) AS n",
    )
    .bind(author)
    .bind(count)
    .execute(pool)
    .await
    .unwrap();
}

/// A server with a 20,000-event timeline backlog, and `rebuild timeline` started on it in
/// small batches (so it takes a while), its stderr as `stderr` says.
async fn slow_rebuild(stderr: std::process::Stdio) -> (TestApp, tokio::process::Child) {
    let app = spawn_app().await;
    assert_no_content(app.client().register("author", "a@x", "pw", None).await);
    backlog(&app.db.pool, "author", 20_000).await;
    let rebuild = command(&app.db.url)
        .args(["rebuild", "timeline", "--batch-size", "100"])
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    (app, rebuild)
}

/// Waits (a while at most) until timeline version 2 is being built and past `position`;
/// returns where it got.
async fn building_past(pool: &PgPool, position: i64) -> i64 {
    let mut reached = 0;
    for _ in 0..600 {
        if let Some((2, state, checkpoint)) = versions(pool, "timeline").await.pop() {
            assert_eq!(state, "building");
            reached = checkpoint;
            if checkpoint > position {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reached
}

/// One client writing and reading its own writes in a loop until `stop`; counts every
/// failure (a status other than expected, or a read without the write just acknowledged).
async fn writer_and_reader(
    sim: SimClient,
    me: String,
    other: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let text = format!("{me} says {n}");
        let posted = sim.tweet(&me, &text, None).await.unwrap();
        if posted.status != StatusCode::NO_CONTENT {
            failures.push(format!("tweet {n}: {}", posted.status));
        }
        let mine = sim.user_msgs(&me, Some(1), None).await.unwrap();
        if mine.status != StatusCode::OK
            || authored(&mine.body).first().map(|(_, c)| c) != Some(&text)
        {
            failures.push(format!(
                "read after tweet {n}: {} {}",
                mine.status, mine.body
            ));
        }
        let (change, expected) = if n % 2 == 1 {
            (
                sim.follow(&me, &other, None).await.unwrap(),
                vec![other.clone()],
            )
        } else {
            (sim.unfollow(&me, &other, None).await.unwrap(), Vec::new())
        };
        if change.status != StatusCode::NO_CONTENT {
            failures.push(format!("follow change {n}: {}", change.status));
        }
        let follows = sim.follows(&me, None, None).await.unwrap();
        if follows.status != StatusCode::OK || follow_names(&follows.body) != expected {
            failures.push(format!("read after follow change {n}: {}", follows.body));
        }
        let public = sim.public_msgs(Some(5), None).await.unwrap();
        if public.status != StatusCode::OK {
            failures.push(format!("public read {n}: {}", public.status));
        }
        requests.fetch_add(5, Ordering::Relaxed);
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_under_load_switches_without_a_failed_or_stale_request() {
    let app = spawn_app().await;
    let sim = app.client();
    let names: Vec<String> = (0..4).map(|n| format!("load user {n}")).collect();
    for name in &names {
        assert_no_content(sim.register(name, "l@x", "pw", None).await);
    }
    backlog(&app.db.pool, "load user 0", 4_000).await;
    // Let the server take in the backlog first (its writes wait for it otherwise).
    assert_no_content(sim.tweet("load user 0", "caught up", None).await);

    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..3)
        .map(|n| {
            tokio::spawn(writer_and_reader(
                app.client(),
                names[n].clone(),
                names[(n + 1) % names.len()].clone(),
                stop.clone(),
                requests.clone(),
            ))
        })
        .collect();

    run_ok(&app.db.url, &["rebuild", "--all", "--batch-size", "250"]).await;
    let every_projection: Vec<&str> = projections::all().iter().map(|p| p.name()).collect();
    for projection in every_projection.iter().copied() {
        assert_eq!(
            states(&app.db.pool, projection).await,
            rebuilt_once(projection),
            "{projection}"
        );
    }
    // The server moves over within moments; then the old versions can go, and everything
    // keeps working on the new ones alone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pruned = run_ok(&app.db.url, &["prune", "--grace", "0"]).await;
    let dropped = format!("{} retired versions dropped", every_projection.len());
    assert!(pruned.contains(&dropped), "{pruned}");
    let before = requests.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.unwrap());
    }
    let total = requests.load(Ordering::Relaxed);
    assert!(total > before, "the load went on after the switch");
    assert!(
        failures.is_empty(),
        "{} of {total} requests failed: {failures:#?}",
        failures.len()
    );

    let verified = run_ok(&app.db.url, &["verify"]).await;
    for projection in ["accounts", "timeline"] {
        let rebuilt = rebuilt_once(projection)[1].0;
        let expected = format!("{projection} version {rebuilt} at position");
        assert!(verified.contains(&expected), "{expected:?} in {verified}");
    }
    assert!(!verified.contains("DIFFERS"), "{verified}");
    app.stop().await;
}

/// The newest timeline version, once a killed rebuild can no longer move it: a batch it sent
/// before it died is still executed, and commits, so its checkpoint is read when it has held
/// still for a while.
async fn settled(pool: &PgPool) -> (i32, String, i64) {
    let mut last = versions(pool, "timeline").await.pop().unwrap();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = versions(pool, "timeline").await.pop().unwrap();
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_killed_half_way_resumes_and_finishes_with_identical_views() {
    let (app, mut rebuild) = slow_rebuild(std::process::Stdio::null()).await;
    // Part way through, kill it without warning.
    let progress = building_past(&app.db.pool, 2_000).await;
    rebuild.kill().await.unwrap();
    assert!(progress > 0, "the rebuild got going");
    let (version, state, killed_at) = settled(&app.db.pool).await;
    assert_eq!((version, state.as_str()), (2, "building"));
    assert!(killed_at < 20_001, "killed before the end ({killed_at})");

    let output = crate::tool::run(&app.db.url, &["rebuild", "timeline"]).await;
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains(&format!(
            "timeline: resuming version 2 from position {killed_at}"
        )),
        "{log}"
    );
    assert_eq!(
        states(&app.db.pool, "timeline").await,
        rebuilt_once("timeline")
    );
    let verified = run_ok(&app.db.url, &["verify", "timeline"]).await;
    assert!(
        verified.contains("identical to a rebuild from the log"),
        "{verified}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM timeline_v2.messages")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 20_000, "every event applied once");
    app.stop().await;
}

#[tokio::test]
async fn verify_reports_a_view_that_differs_from_the_log() {
    let app = spawn_app().await;
    let sim = app.client();
    for name in ["a", "b"] {
        assert_no_content(sim.register(name, "x@x", "pw", None).await);
    }
    assert_no_content(sim.follow("a", "b", None).await);
    assert_no_content(sim.tweet("a", "the truth", None).await);
    assert!(run_ok(&app.db.url, &["verify"]).await.contains("identical"));

    // A view edited behind the log's back.
    sqlx::query("UPDATE timeline_v1.messages SET content = 'a lie'")
        .execute(&app.db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM accounts_v2.follows")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let output = crate::tool::run(&app.db.url, &["verify"]).await;
    assert_eq!(output.status.code(), Some(1));
    let report = String::from_utf8_lossy(&output.stdout);
    let accounts_version = format!("accounts version {} at position", Accounts.version());
    for expected in [
        accounts_version.as_str(),
        "DIFFERS from a rebuild from the log",
        "follows: 0 rows, rebuilt 1 rows",
        "1 rows only in the rebuild, e.g.:",
        "\"follower\":\"a\"",
        "messages: 1 rows, rebuilt 1 rows",
        "\"content\":\"a lie\"",
        "\"content\":\"the truth\"",
        "users: 2 rows, rebuilt 2 rows, identical",
    ] {
        assert!(report.contains(expected), "{expected:?} in:\n{report}");
    }
    // Nothing of the scratch versions is left behind.
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints WHERE state = 'scratch'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(left, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_stops_between_batches_and_says_how_to_resume() {
    let (app, rebuild) = slow_rebuild(std::process::Stdio::piped()).await;
    building_past(&app.db.pool, 0).await;
    let pid = nix::unistd::Pid::from_raw(rebuild.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let output = rebuild.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{log}");
    assert!(
        log.contains("interrupted; run `minitwit-replay rebuild timeline` to resume"),
        "{log}"
    );
    let (version, state, position) = versions(&app.db.pool, "timeline").await.pop().unwrap();
    assert_eq!((version, state.as_str()), (2, "building"));
    assert!(
        position > 0 && position < 20_001,
        "stopped part way ({position})"
    );
    app.stop().await;
}
