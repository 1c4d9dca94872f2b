//! The throwaway PostgreSQL every suite runs against, and a fresh database per test.
//!
//! One embedded cluster serves the whole run (under Cargo's `target/tmp`, with fsync off: it
//! is thrown away; `scripts/test` stops it at exit). Each test gets its own database, so tests
//! run in parallel without seeing each other.

use std::sync::Once;

use database::embedded_postgres::{EmbeddedPostgres, EmbeddedPostgresOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::sim_client::percent_encode;

static CLUSTER: OnceCell<EmbeddedPostgres> = OnceCell::const_new();
static TRACING: Once = Once::new();

/// Logs go to the test output only when `TEST_LOG` is set. Set up by
/// [`TestDatabase::create`], which every test calls first.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            database::telemetry::init("text", database::telemetry::SERVER_FILTER);
        }
    });
}

async fn cluster() -> &'static EmbeddedPostgres {
    CLUSTER
        .get_or_init(|| async {
            let data_dir = crate::scratch_dir().join("test-postgres/data");
            let cluster = EmbeddedPostgres::start(EmbeddedPostgresOptions {
                data_dir,
                fast_unsafe: true,
            })
            .await
            .expect("starting the test PostgreSQL");
            drop_leftover_databases(&cluster).await;
            cluster
        })
        .await
}

/// Databases of earlier runs are dropped at the first use in a run, so the throwaway
/// cluster does not grow without bound. One still in use (another run at the same time)
/// refuses and is left alone.
async fn drop_leftover_databases(cluster: &EmbeddedPostgres) {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options("postgres"))
        .await
        .expect("connecting to the test cluster");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'")
            .fetch_all(&admin)
            .await
            .expect("listing databases");
    for name in names {
        let _ = sqlx::query(&format!("DROP DATABASE \"{name}\""))
            .execute(&admin)
            .await;
    }
    admin.close().await;
}

/// A fresh, empty database of its own.
pub struct TestDatabase {
    /// A URL any process can connect with (unix socket).
    pub url: String,
    /// A pool for the test's own queries.
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates the database and applies the migrations.
    pub async fn create() -> Self {
        init_tracing();
        let cluster = cluster().await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        cluster
            .ensure_database(&name)
            .await
            .expect("creating a test database");
        let options = cluster.connect_options(&name);
        let url = socket_url(&options);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .expect("connecting to the test database");
        database::connect::migrate(&pool).await.expect("migrating");
        Self { url, pool }
    }
}

/// A URL any process can connect with to the database of `options`, an embedded cluster's
/// (which listens on a unix socket only).
pub fn socket_url(options: &PgConnectOptions) -> String {
    let socket = options
        .get_socket()
        .expect("an embedded cluster listens on a socket");
    format!(
        "postgres://minitwit@localhost/{}?host={}",
        options.get_database().expect("a database is named"),
        percent_encode(&socket.to_string_lossy())
    )
}
