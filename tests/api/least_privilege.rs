//! Least privilege: the servers run as `minitwit_server` (every suite's servers do), which
//! serves everything but cannot rewrite the log or change the schema; and the embedded
//! default connects its server the same way.

use database::roles::{self, READER_ROLE, SERVER_ROLE};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use test_support::app::spawn_app;
use test_support::sim_client::assert_no_content;

/// What the server role must be refused, and the statement that would do it (`{view}`: the
/// active timeline's schema).
const REFUSED: &[(&str, &str)] = &[
    ("change an event", "UPDATE events SET payload = '{}'"),
    ("delete an event", "DELETE FROM events"),
    ("empty the log", "TRUNCATE events"),
    ("alter the log", "ALTER TABLE events ADD COLUMN forged text"),
    ("drop the log", "DROP TABLE events"),
    ("disable the log's trigger", "ALTER TABLE events DISABLE TRIGGER events_appended"),
    ("move the log's positions", "SELECT setval(pg_get_serial_sequence('events', 'global_position'), 1)"),
    ("create a table", "CREATE TABLE public.planted (x int)"),
    ("create a schema", "CREATE SCHEMA planted"),
    ("drop a view", "DROP SCHEMA {view} CASCADE"),
    ("alter a view", "ALTER TABLE {view}.messages ADD COLUMN forged text"),
    ("forge a projection version", "INSERT INTO projection_checkpoints (projection, version, state) VALUES ('timeline', 99, 'active')"),
    ("retire a projection version", "DELETE FROM projection_checkpoints"),
    ("rewrite the migration history", "DELETE FROM _sqlx_migrations"),
    ("replace the session key", "UPDATE web_session_key SET secret = secret"),
    ("create a role", "CREATE ROLE planted"),
];

#[tokio::test]
async fn the_server_role_serves_but_cannot_rewrite_the_log_or_change_the_schema() {
    let app = spawn_app().await;
    let sim = app.client();
    // The server, connected as the server role, does all its work: appends, views, `latest`.
    for name in ["writer", "reader"] {
        assert_no_content(
            sim.register(name, &format!("{name}@example.com"), "pw", Some(1))
                .await,
        );
    }
    assert_no_content(sim.tweet("writer", "kept as written", Some(2)).await);
    assert_no_content(sim.follow("reader", "writer", Some(3)).await);
    assert_eq!(sim.latest().await.unwrap(), 3);

    let server = PgPoolOptions::new()
        .max_connections(1)
        .connect(&app.db.server_url)
        .await
        .expect("connecting as the server role");
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&server)
        .await
        .unwrap();
    assert_eq!(role, SERVER_ROLE);
    let timeline = projections::maintenance::active_version(&app.db.pool, "timeline")
        .await
        .unwrap()
        .expect("the timeline has an active version");
    let view = projections::projection::schema_name("timeline", timeline);
    let before = log_digest(&app.db.pool).await;
    for (what, statement) in REFUSED {
        let statement = statement.replace("{view}", &view);
        let refused = sqlx::raw_sql(&statement)
            .execute(&server)
            .await
            .expect_err(&format!("the server role could {what}: {statement}"));
        let code = refused
            .as_database_error()
            .and_then(|err| err.code())
            .map(|code| code.into_owned());
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "to {what}, the server role got {refused}, not a refused privilege"
        );
    }
    assert_eq!(
        log_digest(&app.db.pool).await,
        before,
        "the log is as it was"
    );

    assert!(!roles::can_rewrite_events(&server).await.unwrap());

    // The reader role (Grafana's) reads the log, and may not even append to it.
    let reader = PgPoolOptions::new()
        .max_connections(1)
        .connect(&app.db.server_url.replace(SERVER_ROLE, READER_ROLE))
        .await
        .expect("connecting as the reader role");
    assert_eq!(log_digest(&reader).await, before);
    for statement in [
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) VALUES ('user', 'planted', 1, 'UserRegistered', '1.0', '{}', '{}')",
        "SELECT * FROM simulator_latest",
        "SELECT * FROM web_sessions",
    ] {
        let refused = sqlx::raw_sql(statement).execute(&reader).await;
        assert!(refused.is_err(), "the reader role may run {statement}");
    }
    assert!(
        roles::can_rewrite_events(&app.db.pool).await.unwrap(),
        "the owner can, so the check tells the two apart"
    );
}

/// The log's size and a digest of all its rows.
async fn log_digest(pool: &PgPool) -> (i64, String) {
    sqlx::query_as(
        "SELECT count(*), md5(coalesce(string_agg(e::text, '|' ORDER BY global_position), '')) \
         FROM events e",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The roles of the client connections to the database `minitwit` of the embedded cluster in
/// `cluster_dir`, other than the caller's own (which is the cluster's superuser).
pub async fn roles_connected_to_embedded(cluster_dir: &std::path::Path) -> Vec<String> {
    let cluster = database::embedded_postgres::EmbeddedPostgres::start(
        database::embedded_postgres::EmbeddedPostgresOptions {
            data_dir: cluster_dir.to_owned(),
            fast_unsafe: false,
        },
    )
    .await
    .expect("attaching to the embedded cluster");
    assert!(!cluster.started_here(), "the server's cluster is running");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options("postgres"))
        .await
        .expect("connecting to the embedded cluster");
    let roles = sqlx::query_scalar(
        "SELECT DISTINCT usename::text FROM pg_stat_activity \
         WHERE datname = 'minitwit' AND backend_type = 'client backend' \
           AND pid <> pg_backend_pid() ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    roles
}
