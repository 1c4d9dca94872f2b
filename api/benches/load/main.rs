//! `scripts/bench`: MiniTwit measured against the limits of the machine it runs on.
//!
//! One run starts a private, durable PostgreSQL and the release server, loads two stores
//! through events (one the size of the course's full simulator scenario, one large), runs
//! the workloads of issues 6 and 15 — each beside its reference (a trivial HTTP server,
//! `pgbench`, a raw `COPY`) measured in the same run — and prints a markdown table ending in
//! `bench: K of N targets met`, which it also writes to `BENCHMARKS.md`.
//!
//! Run through `cargo bench -p api --bench load` (which `scripts/bench` does after building
//! the admin tool); `cargo test --all-targets` builds it and runs nothing.

mod cluster;
mod dataset;
mod load;
mod report;
mod server;
mod workloads;

// The simulator suite's scenario generator: the benchmark replays the same kind of scenario.
// Only its generator, parser and random numbers are used here.
#[allow(dead_code)]
#[path = "../../../tests/simulator/scenario.rs"]
mod scenario;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "MiniTwit's benchmark: every workload beside its reference, in one run")]
struct Options {
    /// Users in the large store.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Messages in the large store.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Users in the store the size of the course's full simulator scenario.
    #[arg(long, default_value_t = 200)]
    scenario_users: usize,
    /// Messages in that store.
    #[arg(long, default_value_t = 11_000)]
    scenario_messages: usize,
    /// Follows in that store.
    #[arg(long, default_value_t = 10_000)]
    scenario_follows: usize,
    /// Actions of the sequential simulator scenario (workload 1, on each store).
    #[arg(long, default_value_t = 2_000)]
    simulator_actions: usize,
    /// Users that the long and the new stream each follow and unfollow (workload 7).
    #[arg(long, default_value_t = 250)]
    stream_targets: usize,
    /// Concurrent writers (workload 2).
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Concurrent readers (workload 3).
    #[arg(long, default_value_t = 16)]
    readers: usize,
    /// Seconds each throughput measurement (and its reference) runs.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// A small, quick run (20,000 messages, 1,000 users, 300 actions, 50 stream targets, 3 s
    /// measurements) that checks the benchmark works; its figures are not worth keeping and
    /// `BENCHMARKS.md` is left alone. The scenario-sized store keeps its size: it is small.
    #[arg(long)]
    quick: bool,
    /// Run only these workloads (numbers from the table, comma-separated), to iterate on
    /// one; `BENCHMARKS.md` is then left alone, as it holds a whole run.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=7))]
    only: Vec<u8>,
    /// Where the cluster, the generated log and the logs go.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// The report file.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// The admin tool (built by scripts/bench beside the server).
    #[arg(long)]
    replay_tool: Option<PathBuf>,
    /// Serve 204 to everything on this address: the trivial reference server (run by the
    /// benchmark itself, in a process of its own).
    #[arg(long, hide = true)]
    trivial_server: Option<String>,
    /// With `--trivial-server`: run this statement for each request before answering, on a
    /// pool the size of the server's (`$1`, if used, is the request's path without its `/`).
    #[arg(long, hide = true, requires_all = ["trivial_server", "statement_database"])]
    statement: Option<String>,
    /// The database `--statement` runs in.
    #[arg(long, hide = true, requires = "statement")]
    statement_database: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Options {
    /// Whether workload `number` is part of this run.
    fn runs(&self, number: u8) -> bool {
        self.only.is_empty() || self.only.contains(&number)
    }
}

fn main() -> anyhow::Result<()> {
    let mut options = Options::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(address) = options.trivial_server.take() {
        let statement = options
            .statement
            .take()
            .zip(options.statement_database.take());
        return runtime.block_on(trivial_server(address, statement));
    }
    if !options.bench {
        println!("the load benchmark runs with `scripts/bench`; nothing to do under `cargo test`");
        return Ok(());
    }
    if options.quick {
        options.users = options.users.min(1_000);
        options.messages = options.messages.min(20_000);
        options.simulator_actions = options.simulator_actions.min(300);
        options.stream_targets = options.stream_targets.min(50);
        options.seconds = options.seconds.min(3);
    }
    runtime.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    // `cargo bench` runs this in the package's folder; paths are the workspace's.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the api package lives in the workspace")?
        .to_owned();
    let work_dir = root.join(&options.work_dir);
    std::fs::create_dir_all(&work_dir)?;
    let server_binary = PathBuf::from(env!("CARGO_BIN_EXE_minitwit"));
    let replay_tool = options
        .replay_tool
        .clone()
        .unwrap_or_else(|| server_binary.with_file_name("minitwit-replay"));
    anyhow::ensure!(
        replay_tool.is_file(),
        "{} is missing: build it with `cargo build --release -p replay-tool`",
        replay_tool.display()
    );
    let measure = Duration::from_secs(options.seconds);

    step("starting a private PostgreSQL");
    let cluster = cluster::Cluster::start_fresh(&work_dir.join("postgres")).await?;
    let stamp = report::Stamp::measure(&root, cluster.server_version().await?);
    let hash = commands::passwords::PasswordHasher::new(1)
        .hash(dataset::PASSWORD.to_owned())
        .await?;

    let scenario = workloads::Scenario::generate(options.simulator_actions)?;
    let mut rows = Vec::new();
    let mut scenario_setup = String::new();
    if options.runs(1) {
        step("1. sequential writes on a store the size of the full simulator scenario");
        let scenario_store = Store::load(
            &cluster,
            &work_dir,
            &replay_tool,
            Some("minitwit_bench_scenario"),
            &dataset::Shape {
                users: options.scenario_users,
                messages: options.scenario_messages,
                mean_follows: options.scenario_follows / options.scenario_users.max(1),
                stream_targets: None,
            },
            &hash,
        )
        .await?;
        let server = server::Server::start(
            &server_binary,
            &scenario_store.url,
            &work_dir.join("server-scenario.log"),
        )
        .await?;
        wait_until_projected(&scenario_store.pool).await?;
        let floor = FloorServers::start(&cluster, &work_dir, &scenario_store).await?;
        let data = &scenario_store.data;
        let store = format!(
            "the full scenario's size ({} users, {} messages, {} follows)",
            data.users, data.messages, data.follows
        );
        rows.push(
            workloads::sequential_writes(&scenario, &server.api_url, &store, &floor.references())
                .await?,
        );
        server.stop().await?;
        scenario_store.pool.close().await;
        scenario_setup = format!(
            " Scenario-sized store: {} users, {} messages, {} follows, {} events, loaded the \
             same way into a database of its own.",
            data.users, data.messages, data.follows, data.events,
        );
    }

    step(&format!(
        "generating {} users and {} messages as events",
        options.users, options.messages
    ));
    let large = Store::load(
        &cluster,
        &work_dir,
        &replay_tool,
        None,
        &dataset::Shape {
            users: options.users,
            messages: options.messages,
            mean_follows: LARGE_STORE_MEAN_FOLLOWS,
            stream_targets: Some(options.stream_targets),
        },
        &hash,
    )
    .await?;
    let data = &large.data;

    step("starting the server and projecting the store");
    let server =
        server::Server::start(&server_binary, &cluster.url, &work_dir.join("server.log")).await?;
    let started = Instant::now();
    wait_until_projected(&cluster.pool).await?;
    let projected = started.elapsed();

    if options.runs(1) {
        step("1. sequential writes on the large store");
        let floor = FloorServers::start(&cluster, &work_dir, &large).await?;
        let store = format!("the large store ({} messages)", data.messages);
        rows.push(
            workloads::sequential_writes(&scenario, &server.api_url, &store, &floor.references())
                .await?,
        );
    }
    let mut stream_row = None;
    if options.runs(7) {
        step("7. the cost of a write against the length of its stream");
        let stream = data
            .stream
            .as_ref()
            .context("the large store has the stream users")?;
        stream_row = Some(workloads::stream_growth(&server.api_url, stream).await?);
    }

    server.reset_peak_memory()?;
    let mut lag = None;
    if options.runs(2) || options.runs(4) {
        step("2. concurrent writes (and 4. their projection lag)");
        let (writes, lag_row) = workloads::writes(
            &cluster,
            &work_dir,
            &server.api_url,
            data.users,
            options.writers,
            measure,
        )
        .await?;
        rows.push(writes);
        lag = Some(lag_row);
    }
    if options.runs(3) {
        step("3. reads on the large store");
        rows.extend(
            workloads::reads(
                &cluster,
                &work_dir,
                &server.api_url,
                &server.web_url,
                data.users,
                &data.reader,
                options.readers,
                measure,
            )
            .await?,
        );
    }
    let peak = server.peak_memory()?;
    rows.extend(lag);

    if options.runs(5) {
        step("5. rebuild of every view");
        rows.push(workloads::rebuild(&cluster, &replay_tool).await?);
    }
    if options.runs(6) {
        rows.push(workloads::memory(peak));
    }
    rows.extend(stream_row);
    server.stop().await?;
    cluster.stop().await?;

    let setup = format!(
        "durable PostgreSQL (fsync and synchronous_commit on), shared_buffers 1 GB; the \
         release server with its default settings. Large store: {} users (and workload 7's \
         two), {} messages, {} events in all — generated in {:.1} s, imported through \
         `minitwit-replay import` in {:.1} s, projected by the starting server in {:.1} s.\
         {scenario_setup} Throughput figures are {} s runs; the client, the server and \
         PostgreSQL share the machine's cores, as do pgbench and PostgreSQL in the \
         references.",
        data.users,
        data.messages,
        data.events,
        large.generated.as_secs_f64(),
        large.imported.as_secs_f64(),
        projected.as_secs_f64(),
        options.seconds
    );
    let table = report::table(&rows);
    println!("\n{}\n- **Setup:** {setup}\n\n{table}", stamp.lines());
    if !options.quick && options.only.is_empty() {
        report::write_markdown(&root.join(&options.out), &rows, &stamp, &setup, NOTES)?;
        println!("written to {}", options.out.display());
    }
    Ok(())
}

/// The mean follows per user of the large store: a social network's, not the simulator's.
const LARGE_STORE_MEAN_FOLLOWS: usize = 16;

/// A store loaded through events: generated, then imported with the admin tool.
struct Store {
    url: String,
    pool: sqlx::PgPool,
    data: dataset::Dataset,
    generated: Duration,
    imported: Duration,
}

impl Store {
    /// Generates `shape` and imports it into the database `name`, or into the cluster's
    /// own database with `None`.
    async fn load(
        cluster: &cluster::Cluster,
        work_dir: &Path,
        replay_tool: &Path,
        name: Option<&str>,
        shape: &dataset::Shape,
        hash: &domain::registration::PasswordHash,
    ) -> anyhow::Result<Self> {
        let (url, pool) = match name {
            None => (cluster.url.clone(), cluster.pool.clone()),
            Some(name) => cluster.another_store(name).await?,
        };
        let started = Instant::now();
        let log_file = work_dir.join("store.jsonl");
        let data = dataset::generate(&log_file, shape, hash)?;
        let generated = started.elapsed();
        let started = Instant::now();
        dataset::import(replay_tool, &url, &log_file).await?;
        let imported = started.elapsed();
        std::fs::remove_file(&log_file).ok();
        Ok(Self {
            url,
            pool,
            data,
            generated,
            imported,
        })
    }
}

/// The reference servers of workload 1, started afresh for each store, and pgbench's
/// durable commit, measured right before the writes it is compared with: a durable commit's
/// cost follows the disk's load (a busy disk made it ten times dearer in one run).
struct FloorServers {
    durable_commit: Duration,
    trivial: TrivialServer,
    commit_alone: TrivialServer,
    event_alone: TrivialServer,
    event_and_view_alone: TrivialServer,
}

impl FloorServers {
    /// Starts them, those that commit doing so in `store` (beside its events and views).
    async fn start(
        cluster: &cluster::Cluster,
        work_dir: &Path,
        store: &Store,
    ) -> anyhow::Result<Self> {
        let durable_commit = cluster.commit_latency(work_dir).await?;
        let statements = workloads::FloorStatements::prepare(&store.pool).await?;
        let committing = |sql| TrivialServer::start(Some((sql, &store.url)));
        Ok(Self {
            durable_commit,
            trivial: TrivialServer::start(None).await?,
            commit_alone: committing(&statements.commit).await?,
            event_alone: committing(&statements.event).await?,
            event_and_view_alone: committing(&statements.event_and_view).await?,
        })
    }

    fn references(&self) -> workloads::FloorReferences<'_> {
        workloads::FloorReferences {
            durable_commit: self.durable_commit,
            trivial: &self.trivial.url,
            commit_alone: &self.commit_alone.url,
            event_alone: &self.event_alone.url,
            event_and_view_alone: &self.event_and_view_alone.url,
        }
    }
}

/// What the table cannot say, kept in `BENCHMARKS.md` under it.
const NOTES: &str = include_str!("notes.md");

fn step(what: &str) {
    eprintln!("bench: {what}");
}

/// Waits until every active view has applied the whole log.
async fn wait_until_projected(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let projections = projections::all();
    loop {
        let mut behind = 0;
        for info in projections::maintenance::versions(pool).await? {
            if info.state != "active" {
                continue;
            }
            let projection = projections
                .iter()
                .find(|projection| projection.name() == info.projection)
                .context("an active version of an unknown projection")?;
            behind += projections::maintenance::lag(pool, projection.as_ref(), info.checkpoint)
                .await?
                .events;
        }
        if behind == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The trivial server, in a process of its own, as the server under test is.
pub struct TrivialServer {
    _child: tokio::process::Child,
    pub url: String,
}

impl TrivialServer {
    /// Starts it answering at once, or after running `statement` (its SQL, and the database
    /// URL it runs in) for each request.
    pub async fn start(statement: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let address = format!("127.0.0.1:{}", server::free_port()?);
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.args(["--trivial-server", &address]);
        if let Some((sql, database)) = statement {
            command.args(["--statement", sql, "--statement-database", database]);
        }
        let child = command.kill_on_drop(true).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the trivial server did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Self {
            _child: child,
            url: format!("http://{address}"),
        })
    }
}

/// Answers every request with 204, on the same HTTP stack as the server (axum on hyper), so
/// that the difference between the two is our work, not the stack: at once, or once
/// `statement` has run — the least any service could do for a request that needs that
/// statement.
async fn trivial_server(
    address: String,
    statement: Option<(String, String)>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let app = match statement {
        None => axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT }),
        Some((sql, database)) => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(SERVER_POOL_SIZE)
                .connect(&database)
                .await?;
            let statement = Arc::new(Statement {
                takes_path: sql.contains("$1"),
                sql,
                pool,
            });
            axum::Router::new().fallback(move |uri: axum::http::Uri| {
                let statement = statement.clone();
                async move { statement.run(uri.path()).await }
            })
        }
    };
    axum::serve(listener, app).await?;
    Ok(())
}

/// The server's default pool size (`MINITWIT_DB_POOL_SIZE`).
const SERVER_POOL_SIZE: u32 = 20;

/// The statement the trivial server runs per request.
struct Statement {
    sql: String,
    takes_path: bool,
    pool: sqlx::PgPool,
}

impl Statement {
    async fn run(&self, path: &str) -> axum::http::StatusCode {
        let mut query = sqlx::query(&self.sql);
        if self.takes_path {
            query = query.bind(path.trim_start_matches('/'));
        }
        match query.fetch_all(&self.pool).await {
            Ok(_) => axum::http::StatusCode::NO_CONTENT,
            Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
