//! Where the database is, and how the pool reaches it: one group of settings that the server
//! and the admin tool both flatten into their command lines, so both find the same database
//! from the same flags and environment.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// Where the database is: shared by the server and the admin tool, so both find the same one
/// from the same settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// PostgreSQL connection URL. Without it (and without DATABASE_URL_FILE) the private
    /// PostgreSQL in the data directory is used (and started if it is not running).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// A file holding the PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL_FILE", conflicts_with = "database_url")]
    pub database_url_file: Option<PathBuf>,

    /// Where the embedded PostgreSQL keeps its data (used only without a database URL).
    #[arg(long, env = "MINITWIT_DATA_DIR", default_value = ".minitwit")]
    pub data_dir: PathBuf,

    /// The master key that wraps every person's data key (32 random bytes in base64, as
    /// `head -c 32 /dev/urandom | base64` makes). Required by a server with a database URL;
    /// the embedded default keeps one in the data directory. Losing it loses everyone's
    /// personal data: keep it apart from the database and its backups.
    #[arg(long, env = "MINITWIT_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,

    /// A file holding the master key.
    #[arg(long, env = "MINITWIT_MASTER_KEY_FILE", conflicts_with = "master_key")]
    pub master_key_file: Option<PathBuf>,

    /// Connections in the database pool.
    #[arg(long, env = "MINITWIT_DB_POOL_SIZE", default_value_t = 20)]
    pub db_pool_size: u32,

    /// How long a request waits for a database connection, in milliseconds, before it fails
    /// with 503: the wait for a busy pool to free one, and also (sqlx retrying meanwhile) for
    /// a database that refuses connections. Outages are mostly answered at once by the
    /// breaker (see `outage`), so this bounds only the requests that meet one first.
    #[arg(long, env = "MINITWIT_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 1000)]
    pub db_acquire_timeout_ms: u64,
}

impl DatabaseConfig {
    /// The pool's acquire deadline.
    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    /// The master key, if one was configured directly or through its file.
    pub fn master_key(&self) -> anyhow::Result<Option<String>> {
        match &self.master_key_file {
            Some(path) => read_secret_file(path).map(Some),
            None => Ok(self.master_key.clone()),
        }
    }

    /// The database URL, if one was configured directly or through its file.
    pub fn database_url(&self) -> anyhow::Result<Option<String>> {
        match &self.database_url_file {
            Some(path) => read_secret_file(path).map(Some),
            None => Ok(self.database_url.clone()),
        }
    }
}

/// Reads a secret file (the `*_FILE` convention of Docker and Compose secrets), dropping the line break editors and `echo` leave at its end.
pub fn read_secret_file(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the secret file {}", path.display()))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}
