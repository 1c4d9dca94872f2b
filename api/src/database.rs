//! Reaching PostgreSQL: a configured URL, or the embedded private cluster; then migrations.

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DatabaseConfig;
use crate::embedded_postgres::{EmbeddedPostgres, EmbeddedPostgresOptions};

/// The database name used on the embedded cluster.
const EMBEDDED_DATABASE: &str = "minitwit";

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
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")?;
    migrate(&pool).await?;
    Ok(Database { pool, embedded })
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
