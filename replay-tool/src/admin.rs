//! Reaching the database the servers use: the same `DATABASE_URL` / `DATABASE_URL_FILE` /
//! `MINITWIT_DATA_DIR` settings. With the embedded default, the tool attaches to the running
//! private cluster (or starts it, and then stops it again when done).

use std::sync::Arc;
use std::time::Duration;

use commands::{CommandBus, CommandSettings};
use database::embedded_postgres::EmbeddedPostgres;
use database::keyring::Keyring;
use database::DatabaseConfig;
use database::{Database, Purpose};
use projections::{Progress, ReadModels};
use sqlx::PgPool;

/// An open connection to the servers' database.
pub struct Admin {
    pub pool: PgPool,
    /// The data keys (without a master key if none was configured: then whatever meets
    /// personal data fails, saying so).
    pub keys: Keyring,
    embedded: Option<EmbeddedPostgres>,
}

impl Admin {
    /// Connects as configured (bringing the schema up to date, as a server would).
    pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Self> {
        let Database {
            pool,
            keys,
            embedded,
            ..
        } = database::connect(config, Purpose::Administer).await?;
        Ok(Self {
            pool,
            keys,
            embedded,
        })
    }

    /// Closes the pool, and stops the embedded cluster if this process started it.
    pub async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
        if let Some(embedded) = self.embedded {
            embedded.stop().await?;
        }
        Ok(())
    }

    /// Reads of the views the servers serve (their active versions).
    pub async fn reads(&self) -> anyhow::Result<(ReadModels, Progress)> {
        let progress = Progress::of_active_versions(self.pool.clone(), &projections::all()).await?;
        Ok((
            ReadModels::new(self.pool.clone(), progress.clone()),
            progress,
        ))
    }

    /// A command bus like the servers', waiting up to `wait` for the views to include each
    /// command (zero: not at all — nothing may be projecting if no server runs).
    pub async fn commands(&self, wait: Duration) -> anyhow::Result<Arc<CommandBus>> {
        let (_, progress) = self.reads().await?;
        let settings = CommandSettings {
            retries: 5,
            read_your_writes_timeout: wait,
            // The admin tool sends no private messages; the servers' setting decides those.
            chat_policy: domain::ChatPolicy::Connected,
            // A run of the tool touches each stream a few times at most.
            cached_events: 10_000,
        };
        Ok(Arc::new(CommandBus::new(
            self.pool.clone(),
            self.keys.clone(),
            progress,
            settings,
        )))
    }
}
