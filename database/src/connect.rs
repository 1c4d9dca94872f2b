//! Reaching PostgreSQL: a configured URL, or the embedded private cluster; then migrations.

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgPool};

use crate::embedded_postgres::{EmbeddedPostgres, EmbeddedPostgresOptions};
use crate::outage;
use crate::settings::DatabaseConfig;

/// The database name used on the embedded cluster.
const EMBEDDED_DATABASE: &str = "minitwit";
/// How long start-up waits for the database to accept connections.
const STARTUP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause between start-up's connection attempts.
const STARTUP_RETRY_DELAY: Duration = Duration::from_millis(100);

/// An open pool, and the embedded cluster behind it if there is one.
pub struct Database {
    pub pool: PgPool,
    /// Kept to stop the cluster at shutdown, if this process started it.
    pub embedded: Option<EmbeddedPostgres>,
}

/// Connects as configured and brings the schema up to date.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Database> {
    let (options, embedded) = match config.database_url()? {
        Some(url) => {
            let options: PgConnectOptions = url.parse().context("parsing DATABASE_URL")?;
            (options, None)
        }
        None => {
            let embedded = EmbeddedPostgres::start(EmbeddedPostgresOptions {
                data_dir: config.data_dir.join("postgres"),
                fast_unsafe: false,
            })
            .await
            .context("starting the embedded PostgreSQL")?;
            embedded.ensure_database(EMBEDDED_DATABASE).await?;
            (embedded.connect_options(EMBEDDED_DATABASE), Some(embedded))
        }
    };
    let pool = PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        // A request that cannot get a connection within this is failing anyway (the
        // simulator gives up after 0.3 s); waiting longer only piles requests up.
        .acquire_timeout(config.db_acquire_timeout())
        // sqlx pings every connection it hands out by default: a round trip before each
        // statement of ours, on the path of every request and projector batch. It pings
        // each connection it takes back anyway, so one that was recently in use is known
        // to be alive; only one idle for a while (through a database restart, perhaps) is
        // checked before it is handed out.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_CONNECTIONS_AFTER {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options);
    await_first_connection(&pool)
        .await
        .context("connecting to PostgreSQL")?;
    migrate(&pool).await?;
    Ok(Database { pool, embedded })
}

/// How long a pooled connection may sit idle before it is checked again on its way out.
const CHECK_IDLE_CONNECTIONS_AFTER: Duration = Duration::from_secs(1);

/// Waits, up to [`STARTUP_CONNECT_TIMEOUT`], until the database accepts a connection: at
/// start-up it may still be starting (a container started beside ours), which deserves more
/// patience than a request's acquire deadline.
async fn await_first_connection(pool: &PgPool) -> Result<(), sqlx::Error> {
    let deadline = tokio::time::Instant::now() + STARTUP_CONNECT_TIMEOUT;
    loop {
        match pool.acquire().await {
            Ok(_) => return Ok(()),
            Err(err)
                if outage::is_unreachable_sqlx(&err) && tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(error = %err, "PostgreSQL not reachable yet; waiting");
                tokio::time::sleep(STARTUP_RETRY_DELAY).await;
            }
            Err(err) => return Err(err),
        }
    }
}

/// The schema migrations of this build (`migrations/`), compiled in.
static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// The migrations this build applies (for readiness: are they all applied?).
pub fn migrator() -> &'static Migrator {
    &MIGRATOR
}

/// Applies the event-store migrations. Safe to run from several replicas at once: sqlx
/// serialises them with an advisory lock.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("applying database migrations")
}
