//! The workloads of issues 6 and 15, each measured beside its reference in the same run,
//! each giving rows of the report.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use projections::{ReadModels, TimelineScope, TimelineWindow};
use serde_json::json;
use sqlx::{PgPool, Row as _};

use crate::cluster::{Cluster, PgbenchResult};
use crate::dataset;
use crate::load::{self, expect_status, Run};
use crate::report::{millis, Row};
use crate::scenario::{self, Command, Rng};
use crate::TrivialServer;

/// The simulator's credentials (the server's defaults).
const AUTHORIZATION: &str = "Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh";
/// Rows a timeline page reads: a page of 30, and one more to know whether an older page
/// exists (`api::web::timelines`).
const PAGE_ROWS: i64 = 31;
/// Rows `GET /msgs` returns by default.
const MSGS_DEFAULT: i64 = 100;

/// What a simulator request does. Registrations are kept apart: they hash a password with
/// argon2id on purpose, and the sequential-write target is about the other three.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Register,
    Tweet,
    Follow,
    Unfollow,
}

impl Kind {
    const WRITES: [Kind; 3] = [Kind::Tweet, Kind::Follow, Kind::Unfollow];

    fn name(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Tweet => "tweet",
            Kind::Follow => "follow",
            Kind::Unfollow => "unfollow",
        }
    }
}

/// One simulator request, ready to send to any server.
struct SimRequest {
    path: String,
    body: serde_json::Value,
    /// Register counts a 400 ("already taken") as success, as the simulator does.
    accepted: &'static [u16],
}

/// A simulator-shaped scenario (the simulator suite's generator), replayed the simulator's
/// way: one request at a time, each on a new connection.
pub struct Scenario {
    actions: usize,
    requests: Vec<(Kind, SimRequest)>,
}

impl Scenario {
    pub fn generate(actions: usize) -> anyhow::Result<Self> {
        let scenario = scenario::parse(&scenario::generate(actions, 0x5151))
            .map_err(|err| anyhow::anyhow!("the generated scenario: {err}"))?;
        let requests = scenario
            .iter()
            .map(|action| {
                let user = &action.user;
                let id = action.id;
                match &action.command {
                    Command::Register { email, pwd } => (
                        Kind::Register,
                        SimRequest {
                            path: format!("/register?latest={id}"),
                            body: json!({"username": user, "email": email, "pwd": pwd}),
                            accepted: &[204, 400],
                        },
                    ),
                    Command::Tweet { content } => (
                        Kind::Tweet,
                        SimRequest {
                            path: format!("/msgs/{user}?latest={id}"),
                            body: json!({ "content": content }),
                            accepted: &[204],
                        },
                    ),
                    Command::Follow { target } => {
                        (Kind::Follow, follow_request(Kind::Follow, user, target, id))
                    }
                    Command::Unfollow { target } => (
                        Kind::Unfollow,
                        follow_request(Kind::Unfollow, user, target, id),
                    ),
                }
            })
            .collect();
        Ok(Self { actions, requests })
    }

    /// The scenario against each of `servers` in turn, a block of [`BLOCK`] requests at a
    /// time, so that all of them meet the same machine: its pace drifts over a run by more
    /// than the differences measured (the floor's parts have doubled from one minute to the
    /// next), while a block is over in a fraction of a second. Whole blocks rather than
    /// single requests, so that what a write leaves running on its server (its projections,
    /// its notifications) mostly falls on the same server's next request, not on another's.
    /// A run per server and kind of request.
    async fn replay_in_turn(&self, servers: &[(Server, &str)]) -> BTreeMap<(Server, Kind), Run> {
        const BLOCK: usize = 100;
        let addressed: Vec<_> = self
            .requests
            .chunks(BLOCK)
            .flat_map(|block| {
                servers.iter().flat_map(move |&(server, base)| {
                    block
                        .iter()
                        .map(move |(kind, request)| ((server, *kind), base, request))
                })
            })
            .collect();
        replay_sequentially(&addressed).await
    }
}

/// A follow or unfollow of `target` by `user`, as the simulator sends it.
fn follow_request(kind: Kind, user: &str, target: &str, latest: i64) -> SimRequest {
    let verb = if kind == Kind::Follow {
        "follow"
    } else {
        "unfollow"
    };
    SimRequest {
        path: format!("/fllws/{user}?latest={latest}"),
        body: json!({ verb: target }),
        accepted: &[204],
    }
}

/// Sends `requests` one at a time, each to its server and on a new connection with
/// `Connection: close`, as the simulator does; a run for each class of request (the first
/// of each triple).
async fn replay_sequentially<K: Ord + Copy>(
    requests: &[(K, &str, &SimRequest)],
) -> BTreeMap<K, Run> {
    let client = load::fresh_connection_client();
    let class_of = |(class, _, _): &(K, &str, &SimRequest)| *class;
    load::sequential(requests, class_of, |(_, base, request)| {
        let reply = client
            .post(format!("{base}{}", request.path))
            .header("Authorization", AUTHORIZATION)
            .header("Connection", "close")
            .json(&request.body)
            .send();
        let accepted = request.accepted;
        async move { expect_status(reply.await, accepted).await }
    })
    .await
}

/// Who answers a request of workload 1: the server under test, or one of the floor's
/// reference servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Server {
    Ours,
    Trivial,
    CommitAlone,
    EventAlone,
    EventAndViewAlone,
}

/// The references of workload 1. The floor is the least a sequential, durable, acknowledged
/// write can cost here: a request on a new connection to a server that does nothing, plus
/// one durable commit. Beside it, what the same writes cost servers that do nothing but
/// commit one row per request, on the same HTTP stack and driver as ours.
pub struct FloorReferences<'a> {
    /// pgbench's mean single-row insert and commit, on one connection.
    pub durable_commit: Duration,
    /// A server answering 204 at once.
    pub trivial: &'a str,
    /// A server committing pgbench's insert per request, then answering 204.
    pub commit_alone: &'a str,
    /// A server committing one row shaped like our events per request.
    pub event_alone: &'a str,
    /// A server committing, per request and in one statement, an event row and the row of
    /// the timeline view it makes: the least any design can do that has the write in its
    /// view by the time it answers.
    pub event_and_view_alone: &'a str,
}

/// The statements the committing reference servers run per request, `$1` being the
/// request's path; each writes to a table of its own, shaped like pgbench's, our events' or
/// our timeline view's (with their identity, defaults and indexes) but apart from them, so
/// that no projector sees their rows.
pub struct FloorStatements {
    /// pgbench's single-row insert.
    pub commit: String,
    /// A post as our store holds it, with no notification.
    pub event: String,
    /// That post and its timeline row.
    pub event_and_view: String,
}

impl FloorStatements {
    /// Creates their tables in the store behind `pool`.
    pub async fn prepare(pool: &PgPool) -> anyhow::Result<Self> {
        let timeline = active_schemas(pool).await?.timeline;
        sqlx::raw_sql(&format!(
            "CREATE TABLE IF NOT EXISTS bench_inserts \
                 (id bigserial PRIMARY KEY, payload text NOT NULL); \
             CREATE TABLE IF NOT EXISTS bench_events (LIKE events INCLUDING ALL); \
             CREATE TABLE IF NOT EXISTS bench_view (LIKE {timeline}.messages INCLUDING ALL);"
        ))
        .execute(pool)
        .await?;
        let event = "INSERT INTO bench_events (aggregate_type, aggregate_id, sequence, \
             event_type, event_version, payload, metadata) \
             SELECT 'message', gen_random_uuid()::text, 1, 'MessagePosted', '1.0', \
             json_build_object('MessagePosted', json_build_object('author', $1, \
                 'content', 'a message about the size of a simulated tweet', \
                 'posted_at', now())), \
             json_build_object('request_id', gen_random_uuid(), 'received_at', now())";
        Ok(Self {
            commit: "INSERT INTO bench_inserts (payload) VALUES ($1)".to_owned(),
            event_and_view: format!(
                "WITH post AS ({event} RETURNING aggregate_id, global_position, \
                     payload->'MessagePosted' AS body) \
                 INSERT INTO bench_view \
                     (message_id, author, content, pub_date, posted_at, position) \
                 SELECT aggregate_id, body->>'author', body->>'content', \
                        extract(epoch FROM now())::bigint, now(), global_position \
                 FROM post"
            ),
            event: event.to_owned(),
        })
    }
}

/// 1. The scenario against the server on `store`: the client-observed mean of each kind of
///    write against the floor. Met when every kind's mean is within twice the floor and no
///    request of the scenario (registrations included) failed.
pub async fn sequential_writes(
    scenario: &Scenario,
    api_url: &str,
    store: &str,
    references: &FloorReferences<'_>,
) -> anyhow::Result<Row> {
    let all = scenario
        .replay_in_turn(&[
            (Server::Ours, api_url),
            (Server::Trivial, references.trivial),
            (Server::CommitAlone, references.commit_alone),
            (Server::EventAlone, references.event_alone),
            (Server::EventAndViewAlone, references.event_and_view_alone),
        ])
        .await;
    let runs: BTreeMap<Kind, &Run> = all
        .iter()
        .filter(|((server, _), _)| *server == Server::Ours)
        .map(|((_, kind), run)| (*kind, run))
        .collect();
    let writes_of = |server: Server| {
        Run::combined(
            Kind::WRITES
                .iter()
                .filter_map(|kind| all.get(&(server, *kind))),
        )
    };
    let mut reference_means = BTreeMap::new();
    for server in [
        Server::Trivial,
        Server::CommitAlone,
        Server::EventAlone,
        Server::EventAndViewAlone,
    ] {
        let writes = writes_of(server);
        anyhow::ensure!(
            writes.failures == 0 && !writes.latencies.is_empty(),
            "the {server:?} reference failed {} of the scenario's writes (first: {:?})",
            writes.failures,
            writes.first_failure
        );
        reference_means.insert(server, writes.mean());
    }
    let trivial = reference_means[&Server::Trivial];
    let commit_alone = reference_means[&Server::CommitAlone];
    let event_alone = reference_means[&Server::EventAlone];
    let event_and_view_alone = reference_means[&Server::EventAndViewAlone];
    let floor = trivial + references.durable_commit;
    let writes = writes_of(Server::Ours);
    let everything = Run::combined(runs.values().copied());
    let of_floor = |mean: Duration| mean.as_secs_f64() / floor.as_secs_f64();
    let mut kinds = Vec::new();
    // The target is every kind's; the ratio shown is the worst of them.
    let mut worst = 0.0_f64;
    for kind in Kind::WRITES {
        let run = runs.get(&kind).filter(|run| !run.latencies.is_empty());
        let run = run.with_context(|| format!("the scenario made no {} request", kind.name()))?;
        let ratio = of_floor(run.mean());
        worst = worst.max(ratio);
        kinds.push(format!(
            "{} {} ({ratio:.2}×, {} requests)",
            kind.name(),
            millis(run.mean()),
            run.latencies.len()
        ));
    }
    Ok(Row {
        workload: format!(
            "1. Sequential writes, simulator-shaped ({} actions, new connection each), on {store}",
            scenario.actions
        ),
        ours: format!(
            "mean per write {} ({:.2}×), p99 {}: {}{}",
            millis(writes.mean()),
            of_floor(writes.mean()),
            millis(writes.quantile(0.99)),
            kinds.join(", "),
            failures(&everything)
        ),
        reference: format!(
            "floor {}: trivial 204 server, same writes, {} + one durable commit (pgbench, 1 \
             client) {}; HTTP and that commit alone (the 204 server committing pgbench's \
             insert per request, same writes): {} ({:.2}×); HTTP and an event's insert alone \
             (a row shaped like our events, with their indexes): {} ({:.2}×); HTTP and an \
             event with its view row alone (both in one statement): {} ({:.2}×)",
            millis(floor),
            millis(trivial),
            millis(references.durable_commit),
            millis(commit_alone),
            of_floor(commit_alone),
            millis(event_alone),
            of_floor(event_alone),
            millis(event_and_view_alone),
            of_floor(event_and_view_alone),
        ),
        ratio: Some(worst),
        target: "every kind's mean ≤ 2× floor".to_owned(),
        met: worst <= 2.0 && everything.failures == 0,
    })
}

/// Whose request it is in workload 7, and whether it is the user's first since the server
/// started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stream {
    Long,
    New,
    FirstLong,
    FirstNew,
}

/// 7. Follows and unfollows by the user whose stream holds the dataset's long history
///    against the same by a user with nothing but its registration, sequential on new
///    connections as the simulator sends them. Both follow and then unfollow each target in
///    turn, interleaved request by request so that both see the same machine. Each user's
///    first command since the server started reads its whole stream (a replica keeps the
///    state afterwards): it is timed on its own, and the comparison is of the commands after.
pub async fn stream_growth(api_url: &str, stream: &dataset::StreamUsers) -> anyhow::Result<Row> {
    let users = [(Stream::Long, &stream.heavy), (Stream::New, &stream.fresh)];
    let first_target = stream
        .targets
        .first()
        .context("workload 7 has no targets")?;
    // Unfollowing someone not followed: nothing to write, the whole stream to read.
    let mut requests = vec![
        (
            Stream::FirstLong,
            follow_request(Kind::Unfollow, &stream.heavy, first_target, 1),
        ),
        (
            Stream::FirstNew,
            follow_request(Kind::Unfollow, &stream.fresh, first_target, 2),
        ),
    ];
    for target in &stream.targets {
        for kind in [Kind::Follow, Kind::Unfollow] {
            for (whose, user) in users {
                let latest = i64::try_from(requests.len())? + 1;
                requests.push((whose, follow_request(kind, user, target, latest)));
            }
        }
    }
    let addressed: Vec<_> = requests
        .iter()
        .map(|(whose, request)| (*whose, api_url, request))
        .collect();
    let runs = replay_sequentially(&addressed).await;
    let long = runs
        .get(&Stream::Long)
        .context("no request of the long stream")?;
    let new = runs
        .get(&Stream::New)
        .context("no request of the new stream")?;
    let first = |whose| {
        runs.get(&whose)
            .map_or_else(|| "none".to_owned(), |run| millis(run.mean()))
    };
    let ratio = long.mean().as_secs_f64() / new.mean().as_secs_f64();
    Ok(Row {
        workload: format!(
            "7. Write cost against stream length ({} follows and {} unfollows each, sequential, new \
             connection each)",
            stream.targets.len(),
            stream.targets.len()
        ),
        ours: format!(
            "user with {} follow events: mean {}, p99 {} (its first command since the server \
             started: {}){}",
            dataset::HEAVY_FOLLOW_EVENTS,
            millis(long.mean()),
            millis(long.quantile(0.99)),
            first(Stream::FirstLong),
            failures(long)
        ),
        reference: format!(
            "new user: mean {}, p99 {} (first: {}){}",
            millis(new.mean()),
            millis(new.quantile(0.99)),
            first(Stream::FirstNew),
            failures(new)
        ),
        ratio: Some(ratio),
        target: "≤ 1.2×".to_owned(),
        met: ratio <= 1.2 && long.failures == 0 && new.failures == 0,
    })
}

/// 2 and 4 (the two rows, in that order). Concurrent writers — tweets, follows, unfollows, each acknowledged after
/// read-your-writes — against pgbench's single-row insert-and-commit at the same
/// concurrency; then the projection lag those writes saw.
pub async fn writes(
    cluster: &Cluster,
    work_dir: &Path,
    api_url: &str,
    users: usize,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(Row, Row)> {
    let pool = &cluster.pool;
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
        .fetch_one(pool)
        .await?;
    let client = load::keep_alive_client();
    // The writers, sending to the API at `base`.
    let write_load = |base: &str| {
        let (client, base) = (client.clone(), base.to_owned());
        load::concurrent(clients, duration, move |writer, step| {
            let mut rng = Rng::new((writer as u64) << 32 | step);
            let user = 1 + rng.below(users);
            let other = 1 + rng.below(users);
            let (path, body) = match rng.below(100) {
                0..45 => (
                    format!("/msgs/{user}"),
                    json!({"content": format!("writer {writer} step {step}")}),
                ),
                45..80 => (
                    format!("/fllws/{user}"),
                    json!({ "follow": other.to_string() }),
                ),
                _ => (
                    format!("/fllws/{user}"),
                    json!({ "unfollow": other.to_string() }),
                ),
            };
            let reply = client
                .post(format!("{base}{path}"))
                .header("Authorization", AUTHORIZATION)
                .json(&body)
                .send();
            async move { expect_status(reply.await, &[204]).await }
        })
    };
    let ours = write_load(api_url).await;
    cluster.create_insert_table().await?;
    let reference = cluster
        .pgbench(
            work_dir,
            "insert",
            crate::cluster::INSERT_SCRIPT,
            clients,
            duration.as_secs(),
        )
        .await?;
    let statement_server = TrivialServer::start(Some((
        crate::cluster::INSERT_SCRIPT
            .trim_end()
            .trim_end_matches(';'),
        &cluster.url,
    )))
    .await?;
    let alone = write_load(&statement_server.url).await;
    let throughput = against_pgbench(
        format!("2. Write throughput ({clients} keep-alive clients, read-your-writes)"),
        "commands/s",
        &ours,
        "pgbench insert+commit",
        &reference,
        &alone,
        Duration::from_millis(50),
    );
    Ok((throughput, projection_lag(pool, head).await?))
}

/// A throughput row against pgbench: met at half its rate or more, with every request
/// answered and the p99 under `p99_bound`.
///
/// `alone` is the same client against the trivial server running pgbench's statement once
/// per request: HTTP and that statement with nothing else, which the row shows as the most
/// a service can reach here (the client, the server and PostgreSQL share the cores).
fn against_pgbench(
    workload: String,
    unit: &str,
    ours: &Run,
    reference_name: &str,
    reference: &PgbenchResult,
    alone: &Run,
    p99_bound: Duration,
) -> Row {
    let ratio = ours.rate() / reference.tps;
    let p99 = ours.quantile(0.99);
    Row {
        workload,
        ours: format!(
            "{:.0} {unit}; p50 {}, p99 {}{}",
            ours.rate(),
            millis(ours.quantile(0.5)),
            millis(p99),
            failures(ours)
        ),
        reference: format!(
            "{reference_name}: {:.0} tps, p99 {}; HTTP and that statement alone (a 204 server \
             running it per request, same client): {:.0} {unit} ({:.2}×){}",
            reference.tps,
            millis(load::quantile(&reference.latencies, 0.99)),
            alone.rate(),
            alone.rate() / reference.tps,
            failures(alone),
        ),
        ratio: Some(ratio),
        target: format!("≥ 0.5×, p99 < {} ms", p99_bound.as_millis()),
        met: ratio >= 0.5 && p99 < p99_bound && ours.failures == 0,
    }
}

/// 4. From an event's commit to the commit of the view row it produced, for the events
///    after `head`: both are commit timestamps (`track_commit_timestamp`), read off the rows.
async fn projection_lag(pool: &PgPool, head: i64) -> anyhow::Result<Row> {
    let schemas = active_schemas(pool).await?;
    let row = sqlx::query(&format!(
        "WITH lags AS ( \
             SELECT pg_xact_commit_timestamp(m.xmin) - pg_xact_commit_timestamp(e.xmin) AS lag \
             FROM events e JOIN {timeline}.messages m ON m.message_id = e.aggregate_id \
             WHERE e.global_position > $1 AND e.event_type = 'MessagePosted' \
             UNION ALL \
             SELECT pg_xact_commit_timestamp(f.xmin) - pg_xact_commit_timestamp(e.xmin) \
             FROM events e JOIN {accounts}.follows f ON f.position = e.global_position \
             WHERE e.global_position > $1 AND e.event_type = 'UserFollowed') \
         SELECT count(*) AS events, \
                extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY lag))::float8 AS p50, \
                extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY lag))::float8 AS p99 \
         FROM lags",
        timeline = schemas.timeline,
        accounts = schemas.accounts
    ))
    .bind(head)
    .fetch_one(pool)
    .await?;
    let events: i64 = row.try_get("events")?;
    let p50 = Duration::from_secs_f64(row.try_get::<Option<f64>, _>("p50")?.unwrap_or(0.0));
    let p99 = Duration::from_secs_f64(row.try_get::<Option<f64>, _>("p99")?.unwrap_or(0.0));
    Ok(Row {
        workload: "4. Projection lag under workload 2 (event commit → view row commit)".to_owned(),
        ours: format!(
            "p50 {}, p99 {} over {events} events",
            millis(p50),
            millis(p99)
        ),
        reference: "—".to_owned(),
        ratio: None,
        target: "p99 < 100 ms".to_owned(),
        met: events > 0 && p99 < Duration::from_millis(100),
    })
}

/// One read endpoint and the statement it is measured against.
struct Read<'a> {
    name: &'static str,
    /// The server's base URL the endpoint is under (the web or the API listener).
    base: &'a str,
    /// The path; `{user}` stands for a random user's number.
    path: &'static str,
    /// Whose timeline the endpoint reads, and how many rows.
    scope: TimelineScope<'a>,
    limit: i64,
    /// Who the scope's user is in the statement.
    user: StatementUser,
}

/// The user a read's statement names.
enum StatementUser {
    /// None: the public timeline.
    Nobody,
    /// The random user of the request's path.
    Random,
    /// The signed-in reader, whose timeline has both of its user arguments.
    Reader,
}

/// 3. Reads on the large store, each endpoint against pgbench running its SQL directly at
///    the same concurrency, and against a trivial HTTP server that runs that SQL once per
///    request: the most any service can do here with HTTP and that one statement.
#[allow(clippy::too_many_arguments)]
pub async fn reads(
    cluster: &Cluster,
    work_dir: &Path,
    api_url: &str,
    web_url: &str,
    users: usize,
    reader: &str,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Vec<Row>> {
    let pool = cluster.pool.clone();
    let progress =
        projections::Progress::of_active_versions(pool.clone(), &projections::all()).await?;
    let reads = ReadModels::new(pool, progress);
    // The endpoint's statement with its arguments written in, the random user's as
    // `random_user` (pgbench's variable, or the trivial server's `$1`).
    let statement = |endpoint: &Read, random_user: &str| {
        let mut sql = reads.timeline_sql(endpoint.scope, TimelineWindow::Newest, endpoint.limit);
        let quoted_reader = format!("'{reader}'");
        let user_arguments = match endpoint.user {
            StatementUser::Nobody => vec![],
            StatementUser::Random => vec![random_user],
            StatementUser::Reader => vec![quoted_reader.as_str(), quoted_reader.as_str()],
        };
        let limit = endpoint.limit.to_string();
        let arguments: Vec<&str> = user_arguments.into_iter().chain([limit.as_str()]).collect();
        for (index, argument) in arguments.iter().enumerate().rev() {
            sql = sql.replace(&format!("${}", index + 1), argument);
        }
        sql
    };
    let endpoints = [
        Read {
            name: "public timeline page `/public`",
            base: web_url,
            path: "/public",
            scope: TimelineScope::Public,
            limit: PAGE_ROWS,
            user: StatementUser::Nobody,
        },
        Read {
            name: "a user's timeline page `/<user>`",
            base: web_url,
            path: "/{user}",
            scope: TimelineScope::Author("?"),
            limit: PAGE_ROWS,
            user: StatementUser::Random,
        },
        Read {
            name: "\"my\" timeline `/` (follows 500)",
            base: web_url,
            path: "/",
            scope: TimelineScope::Personal("?"),
            limit: PAGE_ROWS,
            user: StatementUser::Reader,
        },
        Read {
            name: "API `GET /msgs`",
            base: api_url,
            path: "/msgs",
            scope: TimelineScope::Public,
            limit: MSGS_DEFAULT,
            user: StatementUser::Nobody,
        },
    ];
    let signed_in = sign_in(web_url, reader).await?;
    // The same client, reading `path` under `base` with a random user's number in it.
    let read_load = |base: &str, path: &str| {
        let client = signed_in.clone();
        let url = Arc::new(format!("{base}{path}"));
        load::concurrent(clients, duration, move |reader_task, step| {
            let mut rng = Rng::new((reader_task as u64) << 32 | step);
            let reply = client
                .get(url.replace("{user}", &(1 + rng.below(users)).to_string()))
                .header("Authorization", AUTHORIZATION)
                .send();
            async move { expect_status(reply.await, &[200, 204]).await }
        })
    };
    let mut rows = Vec::new();
    for (number, endpoint) in endpoints.iter().enumerate() {
        let ours = read_load(endpoint.base, endpoint.path).await;
        let reference = cluster
            .pgbench(
                work_dir,
                &format!("read{number}"),
                &format!(
                    "\\set user random(1, {users})\n{};\n",
                    statement(endpoint, ":user")
                ),
                clients,
                duration.as_secs(),
            )
            .await?;
        let statement_server =
            TrivialServer::start(Some((&statement(endpoint, "$1"), &cluster.url))).await?;
        let alone = read_load(&statement_server.url, endpoint.path).await;
        rows.push(against_pgbench(
            format!("3. Reads: {} ({clients} clients)", endpoint.name),
            "req/s",
            &ours,
            "pgbench, same SQL",
            &reference,
            &alone,
            Duration::from_millis(20),
        ));
    }
    Ok(rows)
}

/// A keep-alive client signed in as `reader` through the login form.
async fn sign_in(web_url: &str, reader: &str) -> anyhow::Result<reqwest::Client> {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(1024)
        .build()?;
    let reply = client
        .post(format!("{web_url}/login"))
        .form(&[("username", reader), ("password", crate::dataset::PASSWORD)])
        .send()
        .await?;
    anyhow::ensure!(
        reply.status().is_redirection(),
        "signing in as {reader}: {}",
        reply.status()
    );
    Ok(client)
}

/// 5. `minitwit-replay rebuild --all` over the whole log, against reading the log
///    sequentially with COPY into a null sink.
pub async fn rebuild(cluster: &Cluster, replay_tool: &Path) -> anyhow::Result<Row> {
    let pool = &cluster.pool;
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    let read_started = Instant::now();
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_out_raw("COPY events TO STDOUT")
        .await
        .context("COPY events")?;
    use tokio_stream::StreamExt as _;
    let mut bytes = 0_usize;
    while let Some(chunk) = copy.next().await {
        bytes += chunk?.len();
    }
    drop(copy);
    drop(conn);
    let raw_read = read_started.elapsed();
    let raw_rate = events as f64 / raw_read.as_secs_f64();
    let started = Instant::now();
    let status = tokio::process::Command::new(replay_tool)
        .args(["rebuild", "--all"])
        .env("DATABASE_URL", &cluster.url)
        .env("MINITWIT_MASTER_KEY", crate::server::MASTER_KEY)
        .stderr(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "minitwit-replay rebuild --all failed");
    let took = started.elapsed();
    let rate = events as f64 / took.as_secs_f64();
    let ratio = rate / raw_rate;
    let (posts, sql_rate) = timeline_in_sql(pool).await?;
    Ok(Row {
        workload: format!("5. Rebuild rate (`rebuild --all`, {events} events)"),
        ours: format!("{rate:.0} events/s ({:.1} s)", took.as_secs_f64()),
        reference: format!(
            "COPY events TO STDOUT, null sink: {raw_rate:.0} events/s ({:.1} s, {} MB); \
             PostgreSQL alone writing the timeline view from the log ({posts} posts, one \
             `INSERT … SELECT` and the view's indexes): {sql_rate:.0} events/s ({:.2}×)",
            raw_read.as_secs_f64(),
            bytes / 1_000_000,
            sql_rate / raw_rate
        ),
        ratio: Some(ratio),
        target: "≥ 0.3×".to_owned(),
        met: ratio >= 0.3,
    })
}

/// The least any rebuild of the timeline view can do, done by PostgreSQL itself: read every
/// post from the log, decode its payload, write the view's rows into a table of the same
/// shape and build its indexes (the primary key as the rows go in, the read indexes after,
/// as a rebuild does), in one statement each, with no client in the way. Returns the posts
/// and their rate; the table is dropped afterwards.
async fn timeline_in_sql(pool: &PgPool) -> anyhow::Result<(i64, f64)> {
    let schemas = active_schemas(pool).await?;
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS bench_rebuilt_messages; \
         CREATE TABLE bench_rebuilt_messages \
             (LIKE {timeline}.messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS); \
         ALTER TABLE bench_rebuilt_messages ADD PRIMARY KEY (message_id);",
        timeline = schemas.timeline
    ))
    .execute(&mut *conn)
    .await?;
    let started = Instant::now();
    let posts = sqlx::query(
        "INSERT INTO bench_rebuilt_messages \
             (message_id, author, content, pub_date, posted_at, position) \
         SELECT aggregate_id, post->>'author', post->>'content', \
                extract(epoch FROM (post->>'posted_at')::timestamptz)::bigint, \
                (post->>'posted_at')::timestamptz, global_position \
         FROM events, json_extract_path(payload, 'MessagePosted') AS post \
         WHERE event_type = 'MessagePosted'",
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::raw_sql(
        "CREATE INDEX ON bench_rebuilt_messages (pub_date DESC, position DESC) \
             WHERE NOT flagged; \
         CREATE INDEX ON bench_rebuilt_messages (author, pub_date DESC, position DESC) \
             WHERE NOT flagged;",
    )
    .execute(&mut *conn)
    .await?;
    let took = started.elapsed();
    sqlx::raw_sql("DROP TABLE bench_rebuilt_messages")
        .execute(&mut *conn)
        .await?;
    let posts = i64::try_from(posts)?;
    Ok((posts, posts as f64 / took.as_secs_f64()))
}

/// 6. The server's peak resident memory over workloads 2 and 3.
pub fn memory(peak_bytes: u64) -> Row {
    let megabytes = peak_bytes as f64 / 1e6;
    Row {
        workload: "6. Memory: server's peak RSS during workloads 2–3".to_owned(),
        ours: format!("{megabytes:.0} MB"),
        reference: "—".to_owned(),
        ratio: None,
        target: "< 150 MB".to_owned(),
        met: megabytes < 150.0,
    }
}

/// The schemas of the active view versions.
pub struct Schemas {
    pub timeline: String,
    pub accounts: String,
}

pub async fn active_schemas(pool: &PgPool) -> anyhow::Result<Schemas> {
    let versions = projections::maintenance::versions(pool).await?;
    let active = |name: &str| {
        versions
            .iter()
            .find(|info| info.projection == name && info.state == "active")
            .map(|info| info.schema())
            .with_context(|| format!("no active version of {name}"))
    };
    Ok(Schemas {
        timeline: active("timeline")?,
        accounts: active("accounts")?,
    })
}

fn failures(run: &Run) -> String {
    match &run.first_failure {
        None => String::new(),
        Some(first) => format!("; **{} failed** (first: {first})", run.failures),
    }
}
