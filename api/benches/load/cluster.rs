//! The benchmark's private PostgreSQL and its `pgbench` references.
//!
//! The cluster is durable (`fsync` and `synchronous_commit` on, as in production), with two
//! additions a benchmark needs: `track_commit_timestamp`, so that projection lag can be read
//! off the commit times of an event and of the view row it produced, and
//! `pg_stat_statements`, so that a run leaves the statements' profile behind for inspection.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Context};
use database::embedded_postgres::{EmbeddedPostgres, EmbeddedPostgresOptions};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The database the benchmark loads and the server serves.
const DATABASE: &str = "minitwit_bench";

/// A running benchmark cluster.
pub struct Cluster {
    postgres: EmbeddedPostgres,
    /// The `postgres://` URL the server and the admin tool are given.
    pub url: String,
    /// The folder holding the server's Unix socket (pgbench's `-h`).
    socket_dir: PathBuf,
    pub pool: PgPool,
}

impl Cluster {
    /// A fresh cluster in `dir` (whatever was there is removed), configured and restarted
    /// once so that the settings that need a restart take effect.
    pub async fn start_fresh(dir: &Path) -> anyhow::Result<Self> {
        if dir.exists() {
            database::embedded_postgres::stop_cluster(&dir.join("data"))
                .await
                .ok();
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        let options = EmbeddedPostgresOptions {
            data_dir: dir.join("data"),
            fast_unsafe: false,
        };
        let postgres = EmbeddedPostgres::start(options.clone()).await?;
        let mut conn = sqlx::PgPool::connect_with(postgres.connect_options("postgres")).await?;
        for setting in [
            "track_commit_timestamp = on",
            "shared_preload_libraries = 'pg_stat_statements'",
            // The large store's views (about 1 GB) fit in memory, as they would on a server
            // sized for it; the default 128 MB would measure the page cache instead.
            "shared_buffers = '1GB'",
            "max_connections = 200",
        ] {
            sqlx::raw_sql(&format!("ALTER SYSTEM SET {setting}"))
                .execute(&conn)
                .await?;
        }
        conn.close().await;
        postgres.stop().await?;
        let postgres = EmbeddedPostgres::start(options).await?;
        postgres.ensure_database(DATABASE).await?;
        let socket_dir = socket_dir(&postgres.connect_options(DATABASE))?;
        let (url, pool) = open_store(&postgres, &socket_dir, DATABASE).await?;
        conn = pool.clone();
        sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&conn)
            .await?;
        Ok(Self {
            postgres,
            url,
            socket_dir,
            pool,
        })
    }

    /// Another empty, migrated store in the same cluster, for a workload that needs a store
    /// of another size than the large one: its URL and a pool.
    pub async fn another_store(&self, name: &str) -> anyhow::Result<(String, PgPool)> {
        self.postgres.ensure_database(name).await?;
        open_store(&self.postgres, &self.socket_dir, name).await
    }

    /// The server's version as it reports it (`SHOW server_version`), for the report.
    pub async fn server_version(&self) -> anyhow::Result<String> {
        Ok(sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Stops the cluster.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        Ok(self.postgres.stop().await?)
    }

    /// Runs `pgbench` with `script` for `seconds` on `clients` connections and returns its
    /// transactions per second and per-transaction latencies (from its log).
    pub async fn pgbench(
        &self,
        work_dir: &Path,
        name: &str,
        script: &str,
        clients: usize,
        seconds: u64,
    ) -> anyhow::Result<PgbenchResult> {
        let script_path = work_dir.join(format!("{name}.sql"));
        std::fs::write(&script_path, script)?;
        let log_prefix = work_dir.join(format!("pgbench-{name}"));
        for old in pgbench_logs(work_dir, name)? {
            std::fs::remove_file(old)?;
        }
        let output = tokio::process::Command::new(self.postgres.bin_dir().join("pgbench"))
            .args(["-n", "-M", "prepared", "-h"])
            .arg(&self.socket_dir)
            .args(["-U", "minitwit", "-c", &clients.to_string()])
            .args(["-j", &clients.min(2).to_string()])
            .args(["-T", &seconds.to_string(), "-l", "--log-prefix"])
            .arg(&log_prefix)
            .arg("-f")
            .arg(&script_path)
            .arg(DATABASE)
            .current_dir(work_dir)
            .stdin(Stdio::null())
            .output()
            .await
            .context("running pgbench")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "pgbench {name} failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let tps = stdout
            .lines()
            .find_map(|line| line.strip_prefix("tps = "))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.parse::<f64>().ok())
            .with_context(|| format!("no tps in pgbench's output: {stdout}"))?;
        let mut latencies = Vec::new();
        for log in pgbench_logs(work_dir, name)? {
            // Each line: client, transaction, latency in µs, script, epoch, µs.
            for line in std::fs::read_to_string(&log)?.lines() {
                if let Some(micros) = line.split_whitespace().nth(2) {
                    latencies.push(Duration::from_micros(micros.parse()?));
                }
            }
        }
        Ok(PgbenchResult { tps, latencies })
    }

    /// The cost of one durable commit: the mean latency of pgbench inserting one row per
    /// transaction on a single connection, which waits for its WAL flush every time.
    pub async fn commit_latency(&self, work_dir: &Path) -> anyhow::Result<Duration> {
        self.create_insert_table().await?;
        let single = self
            .pgbench(work_dir, "commit", INSERT_SCRIPT, 1, 3)
            .await?;
        Ok(crate::load::mean(&single.latencies))
    }

    /// The table pgbench's insert references write to.
    pub async fn create_insert_table(&self) -> anyhow::Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS bench_inserts \
             (id bigserial PRIMARY KEY, payload text NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The URL of the database `name` (created already) and a pool on it, its schema migrated.
async fn open_store(
    postgres: &EmbeddedPostgres,
    socket_dir: &Path,
    name: &str,
) -> anyhow::Result<(String, PgPool)> {
    let url = format!(
        "postgres://minitwit@localhost/{name}?host={}",
        socket_dir.display()
    );
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(postgres.connect_options(name))
        .await?;
    database::connect::migrate(&pool).await?;
    Ok((url, pool))
}

/// One durable single-row insert per transaction.
pub const INSERT_SCRIPT: &str =
    "INSERT INTO bench_inserts (payload) VALUES ('a row the size of a small event');\n";

/// The per-thread transaction logs of the pgbench run `name` (`pgbench-<name>.<pid>[.<n>]`).
fn pgbench_logs(work_dir: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = format!("pgbench-{name}.");
    let mut logs = Vec::new();
    for entry in std::fs::read_dir(work_dir)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|file| file.to_string_lossy().starts_with(&prefix))
        {
            logs.push(path);
        }
    }
    Ok(logs)
}

/// What a `pgbench` run measured.
pub struct PgbenchResult {
    pub tps: f64,
    pub latencies: Vec<Duration>,
}

fn socket_dir(options: &PgConnectOptions) -> anyhow::Result<PathBuf> {
    options
        .get_socket()
        .cloned()
        .context("the embedded cluster is reached through a Unix socket")
}
