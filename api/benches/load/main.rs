//! `scripts/bench`: MiniTwit measured against the limits of the machine it runs on.
//!
//! One run starts a private, durable PostgreSQL and the release server, loads a large store
//! through events, runs the six workloads of issue 6 — each beside its reference (a trivial
//! HTTP server, `pgbench`, a raw `COPY`) measured in the same run — and prints a markdown
//! table ending in `bench: K of N targets met`, which it also writes to `BENCHMARKS.md`.
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

use std::path::PathBuf;
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
    /// Actions of the sequential simulator scenario.
    #[arg(long, default_value_t = 2_000)]
    simulator_actions: usize,
    /// Concurrent writers (workload 2).
    #[arg(long, default_value_t = 64)]
    writers: usize,
    /// Concurrent readers (workload 3).
    #[arg(long, default_value_t = 16)]
    readers: usize,
    /// Seconds each throughput measurement (and its reference) runs.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// A small, quick run (20,000 messages, 1,000 users, 3 s measurements) that checks the
    /// benchmark works; its figures are not worth keeping and `BENCHMARKS.md` is left alone.
    #[arg(long)]
    quick: bool,
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
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let mut options = Options::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(address) = options.trivial_server.take() {
        return runtime.block_on(trivial_server(address));
    }
    if !options.bench {
        println!("the load benchmark runs with `scripts/bench`; nothing to do under `cargo test`");
        return Ok(());
    }
    if options.quick {
        options.users = options.users.min(1_000);
        options.messages = options.messages.min(20_000);
        options.simulator_actions = options.simulator_actions.min(300);
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
    let durable_commit = cluster.commit_latency(&work_dir).await?;

    step(&format!(
        "generating {} users and {} messages as events",
        options.users, options.messages
    ));
    let started = Instant::now();
    let hash = commands::passwords::PasswordHasher::new(1)
        .hash(dataset::PASSWORD.to_owned())
        .await?;
    let log_file = work_dir.join("large-store.jsonl");
    let data = dataset::generate(&log_file, options.users, options.messages, &hash)?;
    let generated = started.elapsed();
    let started = Instant::now();
    dataset::import(&replay_tool, &cluster.url, &log_file).await?;
    let imported = started.elapsed();
    std::fs::remove_file(&log_file).ok();

    step("starting the server and projecting the store");
    let server =
        server::Server::start(&server_binary, &cluster.url, &work_dir.join("server.log")).await?;
    let started = Instant::now();
    wait_until_projected(&cluster.pool).await?;
    let projected = started.elapsed();

    let mut rows = Vec::new();
    step("1. simulator scenario, sequential");
    let trivial = TrivialServer::start().await?;
    rows.extend(
        workloads::simulator_sequential(
            &server.api_url,
            &trivial.url,
            options.simulator_actions,
            durable_commit,
        )
        .await?,
    );
    drop(trivial);

    server.reset_peak_memory()?;
    step("2. concurrent writes (and 4. their projection lag)");
    let (writes, lag) = workloads::writes(
        &cluster,
        &work_dir,
        &server.api_url,
        data.users,
        options.writers,
        measure,
    )
    .await?;
    step("3. reads on the large store");
    let read_rows = workloads::reads(
        &cluster,
        &work_dir,
        &server.api_url,
        &server.web_url,
        data.users,
        &data.reader,
        options.readers,
        measure,
    )
    .await?;
    let peak = server.peak_memory()?;
    rows.push(writes);
    rows.extend(read_rows);
    rows.push(lag);

    step("5. rebuild of every view");
    rows.push(workloads::rebuild(&cluster, &replay_tool).await?);
    rows.push(workloads::memory(peak));
    server.stop().await?;
    cluster.stop().await?;

    let setup = format!(
        "PostgreSQL 15, durable (fsync and synchronous_commit on), shared_buffers 1 GB; the \
         release server with its default settings. Large store: {} users, {} messages, {} \
         events in all — generated in {:.1} s, imported through `minitwit-replay import` in \
         {:.1} s, projected by the starting server in {:.1} s. Throughput figures are {} s \
         runs; the client, the server and PostgreSQL share the machine's cores, as do \
         pgbench and PostgreSQL in the references.",
        data.users,
        data.messages,
        data.events,
        generated.as_secs_f64(),
        imported.as_secs_f64(),
        projected.as_secs_f64(),
        options.seconds
    );
    let table = report::table(&rows);
    println!("\n{setup}\n\n{table}");
    if !options.quick {
        report::write_markdown(&root.join(&options.out), &rows, &setup, NOTES)?;
        println!("written to {}", options.out.display());
    }
    Ok(())
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
struct TrivialServer {
    _child: tokio::process::Child,
    url: String,
}

impl TrivialServer {
    async fn start() -> anyhow::Result<Self> {
        let address = format!("127.0.0.1:{}", server::free_port()?);
        let child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--trivial-server", &address])
            .kill_on_drop(true)
            .spawn()?;
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

/// Answers every request with 204 at once, on the same HTTP stack as the server (axum on
/// hyper), so that the difference between the two is our work, not the stack.
async fn trivial_server(address: String) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    axum::serve(listener, app).await?;
    Ok(())
}
