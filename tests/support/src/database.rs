//! The throwaway PostgreSQL every suite runs against, and a fresh database per test.
//!
//! One embedded cluster serves the whole run (under Cargo's `target/tmp`, with fsync off: it
//! is thrown away; `scripts/test` stops it at exit). Each test gets its own database, so tests
//! run in parallel without seeing each other.

use std::sync::Once;

use database::embedded_postgres::{EmbeddedPostgres, EmbeddedPostgresOptions};
use database::keyring::Keyring;
use database::sealing::MasterKey;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::OnceCell;

use crate::sim_client::percent_encode;

/// The master key every test server and admin tool run is given (see `database::sealing`):
/// fixed, so that any test's processes open each other's data keys.
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

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

/// A fresh, empty database of its own, set up as a deployment that separates roles sets it
/// up: migrated and with its views created by the owner; servers connect as the server role.
pub struct TestDatabase {
    /// The owner's URL, which any process can connect with (unix socket): the admin tool's.
    pub url: String,
    /// The server role's URL ([`database::roles::SERVER_ROLE`]): the servers'.
    pub server_url: String,
    /// A pool for the test's own queries, as the owner.
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates the database, applies the migrations and creates the views, as the owner.
    pub async fn create() -> Self {
        let db = Self::create_bare().await;
        database::connect::migrate(&db.pool)
            .await
            .expect("migrating");
        projections::maintenance::create_missing_views(&db.pool, &projections::all())
            .await
            .expect("creating the views");
        db
    }

    /// The whole database as `pg_dump` writes it (plain SQL, every table's rows): what a
    /// copy of the database would hand anyone who got hold of it.
    pub async fn dump(&self) -> String {
        let output = tokio::process::Command::new(cluster().await.bin_dir().join("pg_dump"))
            .arg("--dbname")
            .arg(&self.url)
            .output()
            .await
            .expect("running pg_dump");
        assert!(
            output.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("pg_dump writes UTF-8")
    }

    /// The data keys, as the test's servers hold them ([`TEST_MASTER_KEY`]).
    pub async fn keys(&self) -> Keyring {
        let master = MasterKey::from_base64(TEST_MASTER_KEY).expect("the test master key");
        Keyring::open(self.pool.clone(), master)
            .await
            .expect("opening the data keys")
    }

    /// Creates the database and nothing in it, as a deployment's is before its owner has set
    /// it up.
    pub async fn create_bare() -> Self {
        init_tracing();
        let cluster = cluster().await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        cluster
            .ensure_database(&name)
            .await
            .expect("creating a test database");
        let options = cluster.connect_options(&name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options.clone())
            .await
            .expect("connecting to the test database");
        Self {
            url: socket_url(&options),
            server_url: socket_url(&options.username(database::roles::SERVER_ROLE)),
            pool,
        }
    }
}

/// A URL any process can connect with to the database of `options`, an embedded cluster's
/// (which listens on a unix socket only), as its user.
pub fn socket_url(options: &PgConnectOptions) -> String {
    let socket = options
        .get_socket()
        .expect("an embedded cluster listens on a socket");
    format!(
        "postgres://{}@localhost/{}?host={}",
        options.get_username(),
        options.get_database().expect("a database is named"),
        percent_encode(&socket.to_string_lossy())
    )
}
