//! Scale-out on one machine: three real `minitwit` replicas on one PostgreSQL behind a real
//! nginx, driven like the course's simulator while one replica is SIGKILLed and later
//! restarted on the same ports.
//!
//! This module owns the nginx it runs (a configuration generated into a scratch directory,
//! the process, its JSON access log), a seeded simulator-shaped load with a model of what
//! was acknowledged, and the kill and restart. The claim it checks is the deployment's: with
//! passive health checks and retries in nginx (POSTs included, which the server makes safe),
//! a replica crashing and coming back costs the simulator not a single error, loses no
//! acknowledged write, and leaves views that equal a rebuild from the log.
//!
//! nginx comes from Debian's `nginx` package (`/usr/sbin/nginx`, or `MINITWIT_NGINX`). Its
//! scratch directory (`target/tmp/scale-out-*`: configuration, access and error logs) is
//! removed after a passing run and kept after a failing one. `--nocapture` shows a summary:
//! latencies through nginx, who answered what, the retries, and the processes' error logs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use test_support::database::TestDatabase;
use test_support::free_port;
use test_support::server_process::ServerProcess;
use test_support::sim_client::{authored, describe_failure, follow_names, millis, SimClient};
use test_support::views::assert_views_equal_a_rebuild;
use tokio::sync::watch;

use crate::MINITWIT;

/// The simulator's bound on each request, connect and response together.
const SIMULATOR_TIMEOUT: Duration = Duration::from_millis(300);
const ACTIONS: usize = 2_000;
const SEED: u64 = 0x5CA1_E007_2026;
const REPLICAS: usize = 3;
/// The replica that is killed and restarted.
const VICTIM: usize = 1;
/// The kill comes once the load reaches this action (as soon as the victim is in the middle
/// of a request), the restart once it reaches the next and the victim has been down for
/// [`MIN_OUTAGE`]; the actions in between are spread over that outage, the load waits at
/// [`RESTART_AT`] for the restart if it is not done, and the rest of the run, spread over
/// [`AFTER_RESTART`] at least, gives nginx time to send the restarted replica its share
/// again.
const KILL_AT: i64 = 600;
const RESTART_AT: i64 = 1_100;
/// Longer than the upstreams' `fail_timeout` (2 s), so that nginx tries the dead replica
/// again at least once, and fails over again, before it comes back.
const MIN_OUTAGE: Duration = Duration::from_secs(3);
/// At least twice the upstreams' `fail_timeout`: nginx stops sending to a replica for that
/// long after its last failure, so a load that ended sooner after the restart (a fast server
/// gets through the rest of the actions in well under a second) would never reach it.
const AFTER_RESTART: Duration = Duration::from_secs(4);
/// The production default: a write waits this long for the views before answering anyway.
/// The harness's generous 10 s would hide a replica that cannot keep its views current.
const READ_YOUR_WRITES_TIMEOUT_MS: &str = "200";
/// More users than the simulator's share (200 in 26,000), and registered throughout, so that
/// registrations meet the kill and the restart too.
const USERS: usize = 40;

/// The replicas, their database and nginx in front of them.
struct Stack {
    db: TestDatabase,
    addresses: Vec<ReplicaAddresses>,
    replicas: Vec<Option<ServerProcess>>,
    nginx: Nginx,
}

impl Stack {
    async fn start() -> Self {
        let nginx_binary = crate::nginx::nginx_binary();
        let db = TestDatabase::create().await;
        let addresses: Vec<ReplicaAddresses> = (0..REPLICAS)
            .map(|_| ReplicaAddresses {
                api: format!("127.0.0.1:{}", free_port()),
                web: format!("127.0.0.1:{}", free_port()),
            })
            .collect();
        let mut replicas = Vec::new();
        for replica in &addresses {
            replicas.push(Some(replica.start(&db.server_url).await));
        }
        let api_addresses: Vec<&str> = addresses.iter().map(|a| a.api.as_str()).collect();
        let nginx = Nginx::start(&nginx_binary, &api_addresses).await;
        Self {
            db,
            addresses,
            replicas,
            nginx,
        }
    }
}

/// What `load` had acknowledged and is missing or wrong when read back through nginx at
/// `base_url`, with no `latest` (which must stay at the last action's id) and no simulator
/// timeout (full listings are not what it measures); and `latest` itself.
async fn lost_writes_and_latest(load: &Load, base_url: &str, actions: &[Action]) -> Vec<String> {
    let reader = SimClient::new(base_url);
    let mut lost = load.lost_writes(&reader).await;
    let latest = reader.latest().await.expect("GET /latest through nginx");
    if latest != actions.last().expect("some actions").id {
        lost.push(format!("GET /latest: {latest}, not the last action's id"));
    }
    lost
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_nginx_lose_no_request_and_no_write_when_one_crashes_and_returns() {
    let Stack {
        db,
        addresses,
        mut replicas,
        nginx,
    } = Stack::start().await;

    let actions = generate(ACTIONS, SEED);
    let (progress, watched) = watch::channel(0);
    let (restarted_at, restart) = watch::channel(None);
    let victim = replicas[VICTIM].take().expect("the victim runs");
    let chaos = tokio::spawn(crash_and_restart(
        victim,
        addresses[VICTIM].clone(),
        db.server_url.clone(),
        watched,
        restarted_at,
    ));

    let mut load = Load::new(SimClient::with_timeout(&nginx.base_url, SIMULATOR_TIMEOUT));
    let started = Instant::now();
    let mut outage_began = None;
    for (sent, action) in actions.iter().enumerate() {
        // Published before the request goes out: an action below the published id is done.
        progress.send_replace(action.id);
        if action.id >= RESTART_AT && restart.borrow().is_none() {
            // A fast server gets through the outage's share of the load before the restart
            // is done; the rest waits for it, or the load could end before the victim is
            // back and nothing would test its return.
            restart
                .clone()
                .wait_for(Option::is_some)
                .await
                .expect("the victim is restarted");
        }
        load.send(action).await;
        let restarted: Option<Instant> = *restart.borrow();
        let (left, over, since) = match restarted {
            // The actions left share what remains of AFTER_RESTART.
            Some(restarted) => (actions.len() - sent - 1, AFTER_RESTART, restarted),
            // The outage's actions share MIN_OUTAGE, so that the load goes on while the
            // victim is down (and nginx tries it again after its fail_timeout).
            None if action.id >= KILL_AT => {
                let began = *outage_began.get_or_insert_with(Instant::now);
                let left = usize::try_from(RESTART_AT - action.id).expect("ids grow");
                (left, MIN_OUTAGE, began)
            }
            None => (0, Duration::ZERO, started),
        };
        let left = u32::try_from(left).expect("an action count fits");
        let remaining = over.saturating_sub(since.elapsed());
        if left > 0 && !remaining.is_zero() {
            tokio::time::sleep(remaining / left).await;
        }
    }
    let load_time = started.elapsed();
    let (restarted, outage) = chaos.await.expect("the kill and restart");
    replicas[VICTIM] = Some(restarted);

    let lost = lost_writes_and_latest(&load, &nginx.base_url, &actions).await;

    let found_posted = tweets_found_posted(&replicas).await;
    let (access_log, nginx_errors) = nginx.stop().await;
    let mut server_errors = Vec::new();
    for (index, replica) in replicas.into_iter().enumerate() {
        let replica = replica.expect("every replica runs at the end");
        server_errors.extend(
            replica
                .logs()
                .into_iter()
                .map(|line| format!("replica {index}: {line}")),
        );
        replica.terminate().await;
    }
    server_errors.extend(
        outage
            .victim_logs
            .iter()
            .map(|line| format!("replica {VICTIM} (before the kill): {line}")),
    );
    assert_views_equal_a_rebuild(&db.pool).await;

    let served = Served::tally(&access_log, &actions, &addresses, &outage);
    let unexplained_taken = load.unexplained_taken_registrations(&access_log);
    println!(
        "{}",
        summary(
            &load,
            &served,
            &outage,
            load_time,
            &Diagnostics {
                found_posted,
                server_errors,
                nginx_errors,
            }
        )
    );

    let failures: Vec<&String> = load.failures.iter().chain(&unexplained_taken).collect();
    assert!(
        failures.is_empty(),
        "{} failed requests through nginx, the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(20)]
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged writes missing or wrong afterwards, the first: {:#?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    let victim_served = &served.by_replica[VICTIM];
    assert!(
        victim_served[Phase::BeforeKill as usize] > 0,
        "replica {VICTIM} served nothing before it was killed: {served:?}"
    );
    assert!(
        victim_served[Phase::AfterRestart as usize] > 0,
        "replica {VICTIM} served nothing after its restart: {served:?}"
    );
    // The first request round robin gives the dead replica fails and is retried: the
    // failover itself, not just the replicas that stayed up, was exercised. (Usually nginx
    // tries the dead replica once more when its fail_timeout is over, but whether that falls
    // before the restart depends on the machine's pace, so it is not required.)
    assert!(
        !served.retried.is_empty(),
        "nginx never failed over from the dead replica: {served:?}"
    );
    assert_eq!(
        served.answered_by_the_dead, 0,
        "replica {VICTIM} answered while it was dead: the phases are mislabelled"
    );
}

/// Actions between one replica's restart and the next's in a rolling deployment.
const ROLL_EVERY: i64 = 500;

/// A rolling deployment: each replica in turn is stopped as an orchestrator stops it
/// (SIGTERM: it drains what is in flight) and started again on its ports, while the load
/// runs through nginx. Nothing may fail and nothing acknowledged may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_replica_behind_nginx_loses_no_request_and_no_write() {
    let Stack {
        db,
        addresses,
        replicas,
        nginx,
    } = Stack::start().await;
    let actions = generate(ACTIONS, SEED ^ 1);
    let (progress, mut watched) = watch::channel(0);
    let (restarted, mut restarts) = watch::channel(0);
    let database_url = db.server_url.clone();
    let roll = tokio::spawn(async move {
        let mut running = Vec::new();
        for (index, replica) in replicas.into_iter().enumerate() {
            let turn = i64::try_from(index + 1).expect("a replica count fits") * ROLL_EVERY;
            watched
                .wait_for(|&id| id >= turn)
                .await
                .expect("the load runs");
            replica.expect("every replica runs").terminate().await;
            running.push(addresses[index].start(&database_url).await);
            restarted.send_replace(index + 1);
        }
        running
    });

    let mut load = Load::new(SimClient::with_timeout(&nginx.base_url, SIMULATOR_TIMEOUT));
    for action in &actions {
        progress.send_replace(action.id);
        // Each restart is done before the load gets far past it, so that all three happen
        // under load (a fast machine would otherwise finish the load first).
        let due = usize::try_from((action.id - ROLL_EVERY / 2) / ROLL_EVERY).unwrap_or(0);
        if due > *restarts.borrow() && due <= REPLICAS {
            restarts
                .wait_for(|&done| done >= due)
                .await
                .expect("the roll goes on");
        }
        load.send(action).await;
    }
    let replicas = roll.await.expect("the rolling restart");
    let lost = lost_writes_and_latest(&load, &nginx.base_url, &actions).await;
    nginx.stop().await;
    for replica in replicas {
        replica.terminate().await;
    }
    assert!(
        load.failures.is_empty(),
        "{} failed requests through nginx during the roll, the first: {:#?}",
        load.failures.len(),
        &load.failures[..load.failures.len().min(20)]
    );
    assert!(
        lost.is_empty(),
        "{} acknowledged writes missing or wrong after the roll, the first: {:#?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert_views_equal_a_rebuild(&db.pool).await;
}

/// Where a replica listens; fixed, so that it can come back on the same ports.
#[derive(Clone)]
struct ReplicaAddresses {
    api: String,
    web: String,
}

impl ReplicaAddresses {
    async fn start(&self, database_url: &str) -> ServerProcess {
        ServerProcess::start_with(
            MINITWIT,
            &[
                ("DATABASE_URL", database_url),
                ("MINITWIT_API_ADDR", &self.api),
                ("MINITWIT_WEB_ADDR", &self.web),
                (
                    "MINITWIT_READ_YOUR_WRITES_TIMEOUT_MS",
                    READ_YOUR_WRITES_TIMEOUT_MS,
                ),
            ],
        )
        .await
    }
}

/// Where the load was when the victim went down and came back, as action ids.
struct Outage {
    /// Every action below this one was answered before the SIGKILL was sent.
    killed_from: i64,
    /// Every action above this one was sent after the victim had died.
    dead_after: i64,
    /// Every action below this one was answered before the restart began.
    restart_began: i64,
    /// Every action above this one was sent once the restarted replica answered.
    restarted_after: i64,
    /// How long the replica took to answer again after its restart began.
    restart_took: Duration,
    /// What the victim logged before it was killed.
    victim_logs: Vec<String>,
}

/// SIGKILLs `victim` once the load reaches [`KILL_AT`] and starts it again on the same ports
/// once it reaches [`RESTART_AT`] (and [`MIN_OUTAGE`] has passed), while the load keeps
/// going; tells `restarted_at` when the restarted replica answers.
async fn crash_and_restart(
    victim: ServerProcess,
    addresses: ReplicaAddresses,
    database_url: String,
    mut progress: watch::Receiver<i64>,
    restarted_at: watch::Sender<Option<Instant>>,
) -> (ServerProcess, Outage) {
    progress
        .wait_for(|&id| id >= KILL_AT)
        .await
        .expect("the load runs");
    wait_until_mid_write(&victim).await;
    let killed_from = *progress.borrow();
    let victim_logs = victim.logs();
    victim.kill().await;
    let dead_after = *progress.borrow();
    let killed = Instant::now();
    progress
        .wait_for(|&id| id >= RESTART_AT)
        .await
        .expect("the load runs");
    tokio::time::sleep_until((killed + MIN_OUTAGE).into()).await;
    let restart_began = *progress.borrow();
    let restarting = Instant::now();
    let restarted = addresses.start(&database_url).await;
    restarted_at.send_replace(Some(Instant::now()));
    let restart_took = restarting.elapsed();
    let restarted_after = *progress.borrow();
    (
        restarted,
        Outage {
            killed_from,
            dead_after,
            restart_began,
            restarted_after,
            restart_took,
            victim_logs,
        },
    )
}

/// Waits (a few seconds at most) until `replica` is in the middle of a request, preferably a
/// write it has committed but not answered yet (it is waiting for the views): the case that
/// nginx's retries of POSTs and the server's idempotent writes are for. Between two scrapes
/// of its metrics, `minitwit_events_appended_total` moving while `http_server_requests_total`
/// (the scrapes aside) stands still means exactly that; `http_server_active_requests` counts
/// the scrape itself.
async fn wait_until_mid_write(replica: &ServerProcess) {
    let metrics = SimClient::with_timeout(&replica.base_url, SIMULATOR_TIMEOUT);
    let started = Instant::now();
    let mut before: Option<(f64, f64)> = None;
    while started.elapsed() < Duration::from_secs(3) {
        let Ok(reply) = metrics.send(Method::GET, "/metrics", false, None).await else {
            continue;
        };
        let text = reply.body.as_str().unwrap_or_default();
        let total = |prefix: &str| -> f64 {
            samples(text, prefix)
                .filter(|(line, _)| !line.contains("route=\"/metrics\""))
                .map(|(_, value)| value)
                .sum()
        };
        let busy = total("http_server_active_requests{listener=\"api\"}") >= 2.0;
        let now = (
            total("minitwit_events_appended_total{"),
            total("http_server_requests_total{"),
        );
        let mid_write =
            before.is_some_and(|(appended, answered)| now.0 > appended && now.1 == answered);
        before = Some(now);
        // After a second without catching a write, any request in flight will do.
        if busy && (mid_write || started.elapsed() > Duration::from_secs(1)) {
            return;
        }
    }
}

/// The samples of a Prometheus exposition `text` whose line starts with `prefix`, each with
/// its line.
fn samples<'t>(text: &'t str, prefix: &'t str) -> impl Iterator<Item = (&'t str, f64)> + 't {
    text.lines()
        .filter(move |line| line.starts_with(prefix))
        .filter_map(|line| Some((line, line.rsplit_once(' ')?.1.parse().ok()?)))
}

/// Tweets the replicas found already posted: retries of a post whose first attempt had
/// committed (the domain refuses the second post, and the server answers 204 for it).
async fn tweets_found_posted(replicas: &[Option<ServerProcess>]) -> f64 {
    let mut total = 0.0;
    for replica in replicas.iter().flatten() {
        let reply = replica
            .client()
            .send(Method::GET, "/metrics", false, None)
            .await
            .expect("scraping a replica");
        let series = "minitwit_commands_total{aggregate=\"message\",command=\"post\",\
                      outcome=\"rejected\"}";
        total += samples(reply.body.as_str().unwrap_or_default(), series)
            .map(|(_, value)| value)
            .sum::<f64>();
    }
    total
}

// -------------------------------------------------------------------------------- nginx

/// A real nginx on loopback in front of the replicas, in the foreground as our child.
struct Nginx {
    base_url: String,
    dir: PathBuf,
    child: tokio::process::Child,
}

impl Nginx {
    /// Writes the configuration for `upstreams` into a scratch directory, starts nginx on it
    /// and waits until `/latest` answers through it.
    async fn start(binary: &Path, upstreams: &[&str]) -> Self {
        let port = free_port();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("scale-out-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating nginx's scratch directory");
        let config = nginx_config(&dir, port, upstreams);
        std::fs::write(dir.join("nginx.conf"), config).expect("writing nginx.conf");
        let stderr =
            std::fs::File::create(dir.join("stderr.log")).expect("creating nginx's stderr log");
        let child = tokio::process::Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            // Before it reads the configuration nginx logs to its built-in path, which may
            // not be writable; -e points that at the scratch directory too.
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", binary.display()));
        let mut nginx = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            dir,
            child,
        };
        let probe = SimClient::with_timeout(&nginx.base_url, Duration::from_secs(1));
        for _ in 0..200 {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", nginx.own_logs());
            }
            if let Ok(reply) = probe.send(Method::GET, "/latest", false, None).await {
                if reply.status == StatusCode::OK {
                    return nginx;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "nginx did not answer /latest within 10 s:\n{}",
            nginx.own_logs()
        );
    }

    /// nginx's stderr and error log, for a failure message.
    fn own_logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|name| {
                let text = std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
                format!("--- {name}\n{text}")
            })
            .collect()
    }

    /// Stops nginx gracefully (SIGQUIT: requests in flight finish, the access log is
    /// flushed), checks that it exited cleanly, removes its scratch directory and returns
    /// its access log and its error log's lines.
    async fn stop(mut self) -> (Vec<Logged>, Vec<String>) {
        self.signal(nix::sys::signal::Signal::SIGQUIT);
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("nginx stops within 10 s of SIGQUIT")
            .expect("waiting for nginx");
        assert!(
            status.success(),
            "nginx exited with {status}:\n{}",
            self.own_logs()
        );
        let text = std::fs::read_to_string(self.dir.join("access.log"))
            .expect("reading nginx's access log");
        let logged = text
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|err| panic!("access log line {line:?}: {err}"))
            })
            .collect();
        let errors = std::fs::read_to_string(self.dir.join("error.log"))
            .expect("reading nginx's error log")
            .lines()
            .map(str::to_owned)
            .collect();
        std::fs::remove_dir_all(&self.dir).expect("removing nginx's scratch directory");
        (logged, errors)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        if let Some(pid) = self.child.id() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits"));
            let _ = nix::sys::signal::kill(pid, signal);
        }
    }
}

impl Drop for Nginx {
    /// After a failed assertion: SIGTERM lets the master stop its worker, which a bare
    /// SIGKILL (kill_on_drop, the last resort) would leave behind holding the port.
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        self.signal(nix::sys::signal::Signal::SIGTERM);
        for _ in 0..200 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The load balancer's configuration: round robin over `upstreams` with passive health
/// checks, kept-alive upstream connections, tight timeouts and retries of every request
/// (POSTs included) that a replica refused, dropped or answered 502/503.
fn nginx_config(dir: &Path, port: u16, upstreams: &[&str]) -> String {
    let dir = dir.display();
    let servers: String = upstreams
        .iter()
        .map(|address| format!("        server {address} max_fails=1 fail_timeout=2s;\n"))
        .collect();
    // nginx as root would otherwise run its worker as `nobody`.
    let user = if nix::unistd::geteuid().is_root() {
        "user root;\n"
    } else {
        ""
    };
    format!(
        r#"# Generated by tests/ops/scale_out.rs.
daemon off;
master_process on;
{user}worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;

events {{
    worker_connections 256;
}}

http {{
    # One JSON object per request: which replicas were tried, in order, and what each said.
    log_format scale_out escape=json
        '{{"latest":"$arg_latest","method":"$request_method","status":$status,'
        '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
        '"request_time":$request_time}}';
    access_log {dir}/access.log scale_out;

    # Not the package's paths under /var/lib/nginx.
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    # One failure (as proxy_next_upstream defines it) takes a replica out for 2 s; then one
    # request tries it again.
    upstream minitwit {{
{servers}        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{port};

        location / {{
            proxy_pass http://minitwit;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;

            # A dead replica refuses at once; one that does not accept within 100 ms is
            # skipped. The simulator has given up long before the read timeout.
            proxy_connect_timeout 100ms;
            proxy_send_timeout 1s;
            proxy_read_timeout 1s;

            # POSTs are retried too: a retried tweet with the same `latest`, author and
            # content is posted once, follows and unfollows are idempotent, and a retried
            # registration answers 400 "taken", which the simulator counts as success.
            # Retries start only within 250 ms, inside the simulator's 0.3 s.
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 250ms;
        }}
    }}
}}
"#
    )
}

/// One line of the access log.
#[derive(serde::Deserialize)]
struct Logged {
    /// The `latest` query parameter: the action's id, or empty.
    latest: String,
    method: String,
    status: u16,
    /// Every replica tried, in order (`a, b`), or the upstream's name when none could be.
    upstream_addr: String,
    upstream_status: String,
    request_time: f64,
}

impl Logged {
    fn action(&self) -> Option<i64> {
        self.latest.parse().ok()
    }

    fn tried(&self) -> Vec<&str> {
        self.upstream_addr.split(", ").collect()
    }

    /// The replica whose answer the client got.
    fn answered_by(&self) -> &str {
        self.tried().last().copied().unwrap_or_default()
    }
}

// -------------------------------------------------------------------------------- load

/// What one request of the load asks for.
#[derive(Debug)]
enum Request {
    Register {
        user: String,
        email: String,
        pwd: String,
    },
    Tweet {
        user: String,
        content: String,
    },
    Follow {
        user: String,
        target: String,
    },
    Unfollow {
        user: String,
        target: String,
    },
    Public {
        no: Option<i64>,
    },
    Messages {
        user: String,
        no: Option<i64>,
    },
    Follows {
        user: String,
        no: Option<i64>,
    },
}

impl Request {
    fn kind(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Tweet { .. } => "tweet",
            Self::Follow { .. } => "follow",
            Self::Unfollow { .. } => "unfollow",
            Self::Public { .. } => "GET /msgs",
            Self::Messages { .. } => "GET /msgs/<user>",
            Self::Follows { .. } => "GET /fllws/<user>",
        }
    }

    fn is_read(&self) -> bool {
        matches!(
            self,
            Self::Public { .. } | Self::Messages { .. } | Self::Follows { .. }
        )
    }
}

/// One action of the load; `id` goes out as `latest`.
#[derive(Debug)]
struct Action {
    id: i64,
    request: Request,
}

/// The state the server holds after some writes.
#[derive(Default)]
struct Model {
    /// In registration order.
    users: Vec<String>,
    /// Each user's follows, oldest first.
    follows: HashMap<String, Vec<String>>,
    /// Every message as (author, content), oldest first.
    messages: Vec<(String, String)>,
}

impl Model {
    fn is_registered(&self, user: &str) -> bool {
        self.follows.contains_key(user)
    }

    /// Applies a write (reads change nothing).
    fn apply(&mut self, request: &Request) {
        match request {
            Request::Register { user, .. } if !self.is_registered(user) => {
                self.users.push(user.clone());
                self.follows.insert(user.clone(), Vec::new());
            }
            Request::Tweet { user, content } => {
                self.messages.push((user.clone(), content.clone()));
            }
            Request::Follow { user, target } => {
                let follows = self.follows.get_mut(user).expect("a registered user");
                if !follows.contains(target) {
                    follows.push(target.clone());
                }
            }
            Request::Unfollow { user, target } => {
                self.follows
                    .get_mut(user)
                    .expect("a registered user")
                    .retain(|followed| followed != target);
            }
            _ => {}
        }
    }

    fn follows_of(&self, user: &str) -> &[String] {
        self.follows.get(user).map_or(&[], Vec::as_slice)
    }

    /// The newest `limit` messages, of `author` or of everyone, newest first.
    fn newest(&self, author: Option<&str>, limit: usize) -> Vec<(String, String)> {
        self.messages
            .iter()
            .rev()
            .filter(|(user, _)| author.is_none_or(|author| author == user))
            .take(limit)
            .cloned()
            .collect()
    }
}

/// How many entries a listing holds at most for `no` (default 100, negative: all, which
/// this load never brings near the server's cap).
fn limit(no: Option<i64>) -> usize {
    no.map_or(100, |no| usize::try_from(no).unwrap_or(usize::MAX))
}

const FIRST_NAMES: [&str; 12] = [
    "Roger",
    "Åse",
    "José",
    "Zoë",
    "Siobhán",
    "Łukasz",
    "Françoise",
    "Sören",
    "Chloé",
    "Þóra",
    "Nuño",
    "Émile",
];
const LAST_NAMES: [&str; 12] = [
    "Histand",
    "Ødegård",
    "Núñez",
    "Brontë",
    "O'Brien",
    "Dvořák",
    "Çelik",
    "Þórsson",
    "de la Cruz",
    "Nguyễn",
    "Saint-Éloi",
    "Weiß",
];
/// Tweets are made of these: words, typographic marks, and markup that must come back raw.
const TWEET_PIECES: [&str; 24] = [
    "the",
    "simulator",
    "says",
    "hello",
    "déjà",
    "vu",
    "naïve",
    "smørrebrød",
    "Straße",
    "Ærøskøbing",
    "«",
    "»",
    "—",
    "…",
    "“",
    "”",
    "🙂",
    "<b>",
    "</b>",
    "<script>alert(1)</script>",
    "&amp;",
    "&lt;3",
    "\\\"'{",
    "%20",
];
const PASSWORD_CHARS: [char; 12] = ['a', 'x', 'Q', '7', '\\', '"', '\'', '{', '<', '}', 'ø', ' '];
const PUBLIC_NO: [Option<i64>; 4] = [None, Some(1), Some(20), Some(100)];
const USER_NO: [Option<i64>; 5] = [None, Some(0), Some(1), Some(7), Some(-1)];

/// `count` actions, the same for the same seed: half the users registered in the first 5%,
/// the rest spread over the run; then, per action, 1% registrations of a taken name, 40%
/// tweets, 28% follows (a fifth of them of someone already followed), 16% unfollows (30% of
/// someone not followed) and 15% reads. Busy users act far more often than others, as in
/// the real scenario.
fn generate(count: usize, seed: u64) -> Vec<Action> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let early = USERS / 2;
    let ramp = count / 20;
    (1..=count)
        .map(|index| {
            let due = if index <= ramp {
                early * index / ramp
            } else {
                early + (USERS - early) * (index - ramp) / (count - ramp)
            }
            .max(2);
            let id = i64::try_from(index).expect("an action count fits");
            let request = if model.users.len() < due {
                let user = new_name(&mut rng, &model);
                Request::Register {
                    email: format!("{}@example.org", user.replace(' ', ".")),
                    pwd: (0..12)
                        .map(|_| *PASSWORD_CHARS.choose(&mut rng).expect("chars"))
                        .collect(),
                    user,
                }
            } else {
                let users = model.users.len();
                let user =
                    model.users[rng.random_range(0..users).min(rng.random_range(0..users))].clone();
                let anyone = model.users.choose(&mut rng).expect("users").clone();
                let followed = model.follows_of(&user);
                match rng.random_range(0..100) {
                    0 => Request::Register {
                        user: anyone,
                        email: format!("again.{id}@example.org"),
                        pwd: "again".to_owned(),
                    },
                    1..41 => Request::Tweet {
                        content: tweet(&mut rng),
                        user,
                    },
                    41..69 => Request::Follow {
                        target: match followed.choose(&mut rng) {
                            Some(again) if rng.random_bool(0.2) => again.clone(),
                            _ => anyone,
                        },
                        user,
                    },
                    69..85 => Request::Unfollow {
                        target: match followed.choose(&mut rng) {
                            Some(followed) if rng.random_bool(0.7) => followed.clone(),
                            _ => anyone,
                        },
                        user,
                    },
                    85..90 => Request::Public {
                        no: *PUBLIC_NO.choose(&mut rng).expect("no values"),
                    },
                    90..95 => Request::Messages {
                        no: *USER_NO.choose(&mut rng).expect("no values"),
                        user,
                    },
                    _ => Request::Follows {
                        no: *USER_NO.choose(&mut rng).expect("no values"),
                        user,
                    },
                }
            };
            model.apply(&request);
            Action { id, request }
        })
        .collect()
}

fn new_name(rng: &mut StdRng, model: &Model) -> String {
    (0..)
        .map(|attempt| {
            let first = FIRST_NAMES.choose(rng).expect("names");
            let last = LAST_NAMES.choose(rng).expect("names");
            if attempt < 20 {
                format!("{first} {last}")
            } else {
                format!("{first} {last} {attempt}")
            }
        })
        .find(|name| !model.is_registered(name))
        .expect("an endless supply of names")
}

/// Up to 140 characters; a few are empty. Cut at a character count, so a tweet may end in
/// a space or half a tag, which must come back byte for byte.
fn tweet(rng: &mut StdRng) -> String {
    if rng.random_bool(0.005) {
        return String::new();
    }
    let length = rng.random_range(1..=140);
    let mut text = String::new();
    while text.chars().count() < length {
        text.push_str(TWEET_PIECES.choose(rng).expect("pieces"));
        text.push(' ');
    }
    text.chars().take(length).collect()
}

/// The load's client side: sends each action like the simulator and keeps a model of what
/// the server acknowledged.
struct Load {
    sim: SimClient,
    /// Acknowledged writes only.
    model: Model,
    /// Users whose state a failed write leaves unknown: their reads are not compared.
    uncertain: HashSet<String>,
    /// Client-observed latency of every action, by kind.
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    /// What the simulator would count as errors, and reads that disagree with the model.
    failures: Vec<String>,
    /// First registrations of a name answered 400 "taken": right only if nginx retried
    /// them after the first replica tried had created the user.
    taken_first_registrations: Vec<i64>,
}

impl Load {
    fn new(sim: SimClient) -> Self {
        Self {
            sim,
            model: Model::default(),
            uncertain: HashSet::new(),
            latencies: BTreeMap::new(),
            failures: Vec::new(),
            taken_first_registrations: Vec::new(),
        }
    }

    async fn send(&mut self, action: &Action) {
        let (sim, latest) = (&self.sim, Some(action.id));
        let started = Instant::now();
        let result = match &action.request {
            Request::Register { user, email, pwd } => sim.register(user, email, pwd, latest).await,
            Request::Tweet { user, content } => sim.tweet(user, content, latest).await,
            Request::Follow { user, target } => sim.follow(user, target, latest).await,
            Request::Unfollow { user, target } => sim.unfollow(user, target, latest).await,
            Request::Public { no } => sim.public_msgs(*no, latest).await,
            Request::Messages { user, no } => sim.user_msgs(user, *no, latest).await,
            Request::Follows { user, no } => sim.follows(user, *no, latest).await,
        };
        let elapsed = started.elapsed();
        self.latencies
            .entry(action.request.kind())
            .or_default()
            .push(elapsed);
        let reply = match result {
            Ok(reply) => reply,
            Err(err) => return self.fail(action, &describe_failure(&err, elapsed)),
        };
        let expected = match &action.request {
            Request::Register { user, .. } if self.model.is_registered(user) => {
                StatusCode::BAD_REQUEST
            }
            request if request.is_read() => StatusCode::OK,
            _ => StatusCode::NO_CONTENT,
        };
        let taken = reply.body["error_msg"] == "The username is already taken";
        if reply.status == expected {
            self.model.apply(&action.request);
            self.check_read(action, &reply.body);
        } else if matches!(action.request, Request::Register { .. }) && taken {
            self.taken_first_registrations.push(action.id);
            self.model.apply(&action.request);
        } else {
            self.fail(action, &format!("{} {}", reply.status, reply.body));
        }
    }

    fn fail(&mut self, action: &Action, what: &str) {
        self.failures
            .push(format!("#{} {:?}: {what}", action.id, action.request));
        match &action.request {
            Request::Register { user, .. } => {
                // Perhaps registered, perhaps not; later actions name the user either way.
                self.model.apply(&action.request);
                self.uncertain.insert(user.clone());
            }
            Request::Tweet { user, .. }
            | Request::Follow { user, .. }
            | Request::Unfollow { user, .. } => {
                self.uncertain.insert(user.clone());
            }
            _ => {}
        }
    }

    /// A read answered by any replica must show every write acknowledged before it.
    fn check_read(&mut self, action: &Action, body: &Value) {
        let stale = match &action.request {
            Request::Public { no } if self.uncertain.is_empty() => {
                mismatch(&self.model.newest(None, limit(*no)), &authored(body))
            }
            Request::Messages { user, no } if !self.uncertain.contains(user) => {
                mismatch(&self.model.newest(Some(user), limit(*no)), &authored(body))
            }
            Request::Follows { user, no } if !self.uncertain.contains(user) => {
                let follows = self.model.follows_of(user);
                let expected = &follows[..follows.len().min(limit(*no))];
                mismatch(expected, &follow_names(body))
            }
            _ => None,
        };
        if let Some(difference) = stale {
            self.fail(action, &format!("a stale read: {difference}"));
        }
    }

    /// Every user's messages and follows in full, and the public timeline, read through
    /// `reader` and compared with what was acknowledged: each acknowledged tweet exactly
    /// once, in order, and the follows as acknowledged.
    async fn lost_writes(&self, reader: &SimClient) -> Vec<String> {
        let mut lost = Vec::new();
        for user in self
            .model
            .users
            .iter()
            .filter(|u| !self.uncertain.contains(*u))
        {
            match reader.user_msgs(user, Some(-1), None).await {
                Ok(reply) if reply.status == StatusCode::OK => {
                    let expected = self.model.newest(Some(user), usize::MAX);
                    if let Some(difference) = mismatch(&expected, &authored(&reply.body)) {
                        lost.push(format!("messages of {user}: {difference}"));
                    }
                }
                other => lost.push(format!("GET /msgs/{user}: {other:?}")),
            }
            match reader.follows(user, Some(-1), None).await {
                Ok(reply) if reply.status == StatusCode::OK => {
                    let expected = self.model.follows_of(user);
                    if let Some(difference) = mismatch(expected, &follow_names(&reply.body)) {
                        lost.push(format!("follows of {user}: {difference}"));
                    }
                }
                other => lost.push(format!("GET /fllws/{user}: {other:?}")),
            }
        }
        if self.uncertain.is_empty() {
            match reader.public_msgs(Some(-1), None).await {
                Ok(reply) if reply.status == StatusCode::OK => {
                    let expected = self.model.newest(None, usize::MAX);
                    if let Some(difference) = mismatch(&expected, &authored(&reply.body)) {
                        lost.push(format!("public timeline: {difference}"));
                    }
                }
                other => lost.push(format!("GET /msgs: {other:?}")),
            }
        }
        lost
    }

    /// First registrations answered "taken" that nginx did not retry: the name was not
    /// taken when the only replica asked received it.
    fn unexplained_taken_registrations(&self, access_log: &[Logged]) -> Vec<String> {
        self.taken_first_registrations
            .iter()
            .filter(|&&id| {
                !access_log
                    .iter()
                    .any(|line| line.action() == Some(id) && line.tried().len() > 1)
            })
            .map(|id| format!("#{id}: a first registration answered \"taken\" without a retry"))
            .collect()
    }
}

/// Where two lists first differ, if they do, without printing hundreds of entries.
fn mismatch<T: PartialEq + std::fmt::Debug>(expected: &[T], got: &[T]) -> Option<String> {
    if expected == got {
        return None;
    }
    let at = expected
        .iter()
        .zip(got)
        .position(|(expected, got)| expected != got)
        .unwrap_or(expected.len().min(got.len()));
    Some(format!(
        "expected {} entries, got {}; from entry {at}: expected {:?}, got {:?}",
        expected.len(),
        got.len(),
        &expected[at..expected.len().min(at + 3)],
        &got[at..got.len().min(at + 3)]
    ))
}

// -------------------------------------------------------------------------------- accounting

/// The parts of the run, relative to the victim's outage.
#[derive(Debug, Clone, Copy)]
enum Phase {
    BeforeKill,
    Outage,
    AfterRestart,
}

/// Who answered the load's requests, per nginx's access log.
#[derive(Debug)]
struct Served {
    /// Each replica's API address.
    addresses: Vec<String>,
    /// Per replica: requests answered in each [`Phase`].
    by_replica: Vec<[usize; 3]>,
    /// Requests nginx sent to more than one replica, with the replicas tried and their
    /// answers.
    retried: Vec<String>,
    /// How the request in flight when the victim was killed fared, if it was on the victim.
    interrupted: Option<String>,
    /// Requests the victim answered although they were sent while it was dead: none, or the
    /// phases are wrong.
    answered_by_the_dead: usize,
    /// nginx's own time for the load's requests.
    request_times: Vec<Duration>,
}

impl Served {
    fn tally(
        access_log: &[Logged],
        actions: &[Action],
        addresses: &[ReplicaAddresses],
        outage: &Outage,
    ) -> Self {
        let mut served = Self {
            addresses: addresses.iter().map(|a| a.api.clone()).collect(),
            by_replica: vec![[0; 3]; addresses.len()],
            retried: Vec::new(),
            interrupted: None,
            answered_by_the_dead: 0,
            request_times: Vec::new(),
        };
        for line in access_log {
            let Some(id) = line.action() else { continue };
            served
                .request_times
                .push(Duration::from_secs_f64(line.request_time));
            let phase = if id < outage.killed_from {
                Phase::BeforeKill
            } else if id <= outage.restarted_after {
                Phase::Outage
            } else {
                Phase::AfterRestart
            };
            if let Some(replica) = addresses
                .iter()
                .position(|address| address.api == line.answered_by())
            {
                served.by_replica[replica][phase as usize] += 1;
                let dead = outage.dead_after < id && id < outage.restart_began;
                if replica == VICTIM && dead {
                    served.answered_by_the_dead += 1;
                }
            }
            if line.tried().len() > 1 {
                let retry = format!(
                    "#{id} {} {}: tried {} → {}",
                    line.method, line.status, line.upstream_addr, line.upstream_status
                );
                if id == outage.killed_from && line.tried()[0] == addresses[VICTIM].api {
                    let kind = actions
                        .iter()
                        .find(|action| action.id == id)
                        .map_or("?", |action| action.request.kind());
                    served.interrupted = Some(format!("{retry} ({kind})"));
                }
                served.retried.push(retry);
            }
        }
        served
    }
}

/// What the processes told about the run besides their answers.
struct Diagnostics {
    /// Retried tweets the replicas found already posted (see [`tweets_found_posted`]).
    found_posted: f64,
    /// The replicas' logs (error level unless `TEST_LOG` is set).
    server_errors: Vec<String>,
    /// nginx's error log (warnings and up).
    nginx_errors: Vec<String>,
}

fn summary(
    load: &Load,
    served: &Served,
    outage: &Outage,
    load_time: Duration,
    diagnostics: &Diagnostics,
) -> String {
    let all: Vec<Duration> = load.latencies.values().flatten().copied().collect();
    let mut text = format!(
        "scale-out: {ACTIONS} actions through nginx in {:.1} s, {} failures; replica {VICTIM} \
         SIGKILLed at action {}, restarted at action {} (answering after {:.2} s)\n  \
         {:<18} {:>6} {:>9} {:>9} {:>9}\n",
        load_time.as_secs_f64(),
        load.failures.len(),
        outage.killed_from,
        outage.restarted_after,
        outage.restart_took.as_secs_f64(),
        "latency (client)",
        "count",
        "p50",
        "p99",
        "max",
    );
    let rows = std::iter::once(("all", &all))
        .chain(load.latencies.iter().map(|(kind, l)| (*kind, l)))
        .chain(std::iter::once((
            "nginx $request_time",
            &served.request_times,
        )));
    for (kind, latencies) in rows {
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        let _ = writeln!(
            text,
            "  {kind:<18} {:>6} {:>9} {:>9} {:>9}",
            sorted.len(),
            millis(percentile(&sorted, 0.50)),
            millis(percentile(&sorted, 0.99)),
            millis(percentile(&sorted, 1.0)),
        );
    }
    let _ = writeln!(
        text,
        "  answered by                          before kill     outage   after restart"
    );
    for (replica, [before, during, after]) in served.by_replica.iter().enumerate() {
        let name = format!(
            "replica {replica} ({}){}",
            served.addresses[replica],
            if replica == VICTIM { ", killed" } else { "" }
        );
        let _ = writeln!(text, "  {name:<36} {before:>11} {during:>10} {after:>15}");
    }
    let _ = writeln!(
        text,
        "  the kill interrupted: {}",
        served
            .interrupted
            .as_deref()
            .unwrap_or("no request (it fell between the victim's requests)")
    );
    let _ = writeln!(
        text,
        "  retried tweets the replicas found already posted (and answered 204): {}",
        diagnostics.found_posted
    );
    let _ = writeln!(text, "  retried by nginx: {}", served.retried.len());
    for retry in &served.retried {
        let _ = writeln!(text, "    {retry}");
    }
    if !load.taken_first_registrations.is_empty() {
        let _ = writeln!(
            text,
            "  first registrations answered \"taken\": {:?}",
            load.taken_first_registrations
        );
    }
    let logs = [
        ("replicas' log", &diagnostics.server_errors),
        ("nginx's error log", &diagnostics.nginx_errors),
    ];
    for (whose, lines) in logs {
        let _ = writeln!(text, "  {whose}: {} lines", lines.len());
        for line in lines.iter().take(10) {
            let _ = writeln!(text, "    {line}");
        }
    }
    text
}

/// The nearest-rank percentile of sorted `latencies` (zero for none).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len().max(1)) - 1)
        .copied()
        .unwrap_or_default()
}
