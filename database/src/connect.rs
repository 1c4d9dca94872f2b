//! Reaching PostgreSQL: a configured URL, or the embedded private cluster (as the server role
//! or the owner, see [`Purpose`]); then the migrations, and the data keys' check against the
//! master key.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgPool};

use crate::embedded_postgres::{EmbeddedPostgres, EmbeddedPostgresOptions};
use crate::keyring::Keyring;
use crate::outage;
use crate::roles::{self, SERVER_ROLE};
use crate::sealing::MasterKey;
use crate::settings::read_secret_file;
use crate::settings::DatabaseConfig;

/// The embedded default's master key file, in the data directory.
const EMBEDDED_MASTER_KEY_FILE: &str = "master.key";
/// The database name used on the embedded cluster.
const EMBEDDED_DATABASE: &str = "minitwit";
/// How long start-up waits for the database to accept connections.
const STARTUP_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The pause between start-up's connection attempts.
const STARTUP_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Whom a process connects as where the choice is its own: on the embedded cluster, whose
/// superuser it holds. (A configured URL names its role itself.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A server: it works as [`SERVER_ROLE`], and sets the schema up as the owner first.
    Serve,
    /// The admin tool: the owner throughout.
    Administer,
}

/// An open pool, the data keys, and the embedded cluster behind it if there is one.
pub struct Database {
    /// The pool the process works on.
    pub pool: PgPool,
    /// The data keys, on `pool`, checked against the master key (without one: an admin tool
    /// run that was given none, which fails if it meets personal data).
    pub keys: Keyring,
    /// The owner's pool, where it differs from `pool` (a server on the embedded cluster): for
    /// setting the schema up, then closed by [`Database::finish_setup`].
    owner: Option<PgPool>,
    /// Kept to stop the cluster at shutdown, if this process started it.
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// The pool to set the schema up on (the migrations are applied already; the views'
    /// first versions may be left): the owner's, where this process holds it, otherwise
    /// `pool`, whose role then needs the owner's rights only if something is left to do.
    pub fn setup_pool(&self) -> &PgPool {
        self.owner.as_ref().unwrap_or(&self.pool)
    }

    /// Lets go of the owner's connections once the schema is set up: from here on the
    /// process holds only its own role's.
    pub async fn finish_setup(&mut self) {
        if let Some(owner) = self.owner.take() {
            owner.close().await;
        }
    }
}

/// Connects as configured for `purpose` and brings the schema up to date.
pub async fn connect(config: &DatabaseConfig, purpose: Purpose) -> anyhow::Result<Database> {
    let database = match config.database_url()? {
        Some(url) => {
            let options: PgConnectOptions = url.parse().context("parsing DATABASE_URL")?;
            let pool = open_pool(config, options).await?;
            migrate(&pool).await?;
            let keys = open_keyring(&pool, config.master_key()?, purpose).await?;
            Database {
                pool,
                keys,
                owner: None,
                embedded: None,
            }
        }
        None => {
            let embedded = EmbeddedPostgres::start(EmbeddedPostgresOptions {
                data_dir: config.data_dir.join("postgres"),
                fast_unsafe: false,
            })
            .await
            .context("starting the embedded PostgreSQL")?;
            embedded.ensure_database(EMBEDDED_DATABASE).await?;
            let owner = open_pool(config, embedded.connect_options(EMBEDDED_DATABASE)).await?;
            // Before the server role connects: the migrations create it.
            migrate(&owner).await?;
            let (pool, owner) = match purpose {
                Purpose::Administer => (owner, None),
                Purpose::Serve => {
                    let options = embedded
                        .connect_options(EMBEDDED_DATABASE)
                        .username(SERVER_ROLE);
                    (open_pool(config, options).await?, Some(owner))
                }
            };
            let master_key = match config.master_key()? {
                Some(key) => key,
                None => embedded_master_key(&config.data_dir)?,
            };
            let keys = open_keyring(&pool, Some(master_key), purpose).await?;
            Database {
                pool,
                keys,
                owner,
                embedded: Some(embedded),
            }
        }
    };
    if purpose == Purpose::Serve && roles::can_rewrite_events(&database.pool).await? {
        tracing::warn!(
            "the server's database role may change or delete events; least privilege is to \
             connect as the role {SERVER_ROLE} (see the README's Operations section)"
        );
    }
    Ok(database)
}

/// The keyring on `pool` with `master_key`, checked; without a master key, a server refuses
/// to start and the admin tool goes on without one.
async fn open_keyring(
    pool: &PgPool,
    master_key: Option<String>,
    purpose: Purpose,
) -> anyhow::Result<Keyring> {
    let Some(master_key) = master_key else {
        return match purpose {
            Purpose::Serve => Err(anyhow::anyhow!(
                "no master key: a server with a database URL needs MINITWIT_MASTER_KEY_FILE \
                 (32 random bytes in base64: `head -c 32 /dev/urandom | base64`), the same for \
                 every replica"
            )),
            Purpose::Administer => Ok(Keyring::without_master_key(pool.clone())),
        };
    };
    let master_key = MasterKey::from_base64(&master_key).context("reading the master key")?;
    Ok(Keyring::open(pool.clone(), master_key).await?)
}

/// The embedded default's master key: a file in the data directory, made on first use,
/// readable by its owner alone. (A deployment keeps its key apart from its database.)
fn embedded_master_key(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(EMBEDDED_MASTER_KEY_FILE);
    match read_secret_file(&path) {
        Ok(key) => return Ok(key),
        Err(_) if !path.exists() => {}
        Err(err) => return Err(err),
    }
    let key = MasterKey::generate_base64();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating the master key file {}", path.display()))?;
    writeln!(file, "{key}")?;
    file.sync_all()?;
    tracing::info!(file = %path.display(), "made a master key for the embedded database");
    Ok(key)
}

/// A pool on `options`, once the database accepts a connection.
async fn open_pool(config: &DatabaseConfig, options: PgConnectOptions) -> anyhow::Result<PgPool> {
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
    Ok(pool)
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

/// Applies the event-store migrations that are not applied yet. Safe to run from several
/// replicas at once: sqlx serialises them with an advisory lock. Where every one is applied
/// already this only reads, so a role that may not change the schema ([`SERVER_ROLE`]) can
/// start on a schema that its owner has brought up to date.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    if unapplied_migrations(pool)
        .await
        .is_ok_and(|unapplied| unapplied.is_empty())
    {
        return Ok(());
    }
    MIGRATOR.run(pool).await.map_err(|err| {
        roles::explain_refused_setup(
            anyhow::Error::new(err).context("applying database migrations"),
            "the schema is behind this build",
        )
    })
}

/// The migrations of this build that the database lacks, or holds in a different form (its
/// checksum differs): none, where it is up to date.
pub async fn unapplied_migrations(pool: &PgPool) -> Result<Vec<i64>, sqlx::Error> {
    let applied: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .filter(|migration| {
            !applied.iter().any(|(version, checksum)| {
                *version == migration.version && checksum[..] == migration.checksum[..]
            })
        })
        .map(|migration| migration.version)
        .collect())
}
