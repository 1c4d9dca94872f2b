//! Test harness, shared by the integration suites: a real PostgreSQL, a fresh database per
//! test, and the real server.
//!
//! One embedded cluster serves the whole run (under Cargo's target tmp dir, with fsync off:
//! it is thrown away). Each test gets its own database, so tests run in parallel without
//! seeing each other. The server runs in-process on a random port ([`spawn_app`]);
//! `server_process.rs` runs the real `minitwit` binary in a child process instead, for the
//! suites of the `api` package (only they can name that binary).

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use api::{Application, Config};
use clap::Parser;
use database::embedded_postgres::{EmbeddedPostgres, EmbeddedPostgresOptions};
use projections::ProjectorSettings;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::{oneshot, OnceCell};

/// The simulator's default `Authorization` header.
pub const SIMULATOR_AUTH: &str = "Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh";

static CLUSTER: OnceCell<EmbeddedPostgres> = OnceCell::const_new();
static TRACING: Once = Once::new();

/// Logs go to the test output only when `TEST_LOG` is set.
fn init_tracing() {
    TRACING.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            database::telemetry::init("text", database::telemetry::SERVER_FILTER);
        }
    });
}

async fn cluster() -> &'static EmbeddedPostgres {
    CLUSTER
        .get_or_init(|| async {
            let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("test-postgres/data");
            let cluster = EmbeddedPostgres::start(EmbeddedPostgresOptions {
                data_dir,
                fast_unsafe: true,
            })
            .await
            .expect("starting the test PostgreSQL");
            drop_leftover_databases(&cluster).await;
            cluster
        })
        .await
}

/// Databases of earlier runs are dropped at the first use in a run, so the throwaway
/// cluster does not grow without bound. One still in use (another run at the same time)
/// refuses and is left alone.
async fn drop_leftover_databases(cluster: &EmbeddedPostgres) {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options("postgres"))
        .await
        .expect("connecting to the test cluster");
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%'")
            .fetch_all(&admin)
            .await
            .expect("listing databases");
    for name in names {
        let _ = sqlx::query(&format!("DROP DATABASE \"{name}\""))
            .execute(&admin)
            .await;
    }
    admin.close().await;
}

/// A fresh, empty database of its own.
pub struct TestDatabase {
    /// A URL any process can connect with (unix socket).
    pub url: String,
    /// A pool for the test's own queries.
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates the database and applies the migrations.
    pub async fn create() -> Self {
        init_tracing();
        let cluster = cluster().await;
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        cluster
            .ensure_database(&name)
            .await
            .expect("creating a test database");
        let options = cluster.connect_options(&name);
        let url = socket_url(&options);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect_with(options)
            .await
            .expect("connecting to the test database");
        database::connect::migrate(&pool).await.expect("migrating");
        Self { url, pool }
    }
}

/// A URL any process can connect with to the database of `options`, an embedded cluster's
/// (which listens on a unix socket only).
pub fn socket_url(options: &PgConnectOptions) -> String {
    let socket = options
        .get_socket()
        .expect("an embedded cluster listens on a socket");
    format!(
        "postgres://minitwit@localhost/{}?host={}",
        options.get_database().expect("a database is named"),
        percent_encode(&socket.to_string_lossy())
    )
}

/// The configuration tests run the server with: a random port, quick polling, and a
/// generous read-your-writes bound (a shared 2-core machine must not make reads stale).
pub fn test_config(database_url: &str) -> Config {
    Config::try_parse_from([
        "minitwit",
        "--database-url",
        database_url,
        "--api-addr",
        "127.0.0.1:0",
        "--web-addr",
        "127.0.0.1:0",
        "--read-your-writes-timeout-ms",
        "10000",
        "--projector-poll-ms",
        "100",
        "--db-pool-size",
        "10",
    ])
    .expect("test configuration")
}

/// The real server, running in this process.
pub struct TestApp {
    /// The simulator API's root.
    pub base_url: String,
    /// The browser pages' root.
    pub web_url: String,
    pub db: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Starts the server on a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_on(TestDatabase::create().await).await
}

/// Starts the server on a fresh database, with `configure` applied to the test settings.
pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDatabase::create().await;
    let mut config = test_config(&db.url);
    configure(&mut config);
    start_app(db, config).await
}

/// Starts the server on `db`.
pub async fn spawn_app_on(db: TestDatabase) -> TestApp {
    let config = test_config(&db.url);
    start_app(db, config).await
}

async fn start_app(db: TestDatabase, config: Config) -> TestApp {
    let application = Application::build(config)
        .await
        .expect("building the application");
    let base_url = format!("http://{}", application.api_addr());
    let web_url = format!("http://{}", application.web_addr());
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        base_url,
        web_url,
        db,
        shutdown: Some(shutdown),
        server,
    }
}

impl TestApp {
    /// A simulator-like client of this server.
    pub fn client(&self) -> SimClient {
        SimClient::new(&self.base_url)
    }

    /// Shuts the server down gracefully, returning its database.
    pub async fn stop(mut self) -> TestDatabase {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        (&mut self.server)
            .await
            .expect("server task")
            .expect("server ran cleanly");
        self.db
    }
}

/// A duration in milliseconds, for reports.
pub fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1_000.0)
}

/// A request's failure as the simulator would see it, with reqwest's chain of causes.
pub fn describe_failure(err: &reqwest::Error, elapsed: Duration) -> String {
    let mut text = if err.is_timeout() {
        format!("timed out after {}", millis(elapsed))
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("finding a free port")
        .port()
}

/// Percent-encodes everything but RFC 3986's unreserved characters (for path segments
/// and query values).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// A response: status and body (JSON when there is one).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

/// A client that talks to the API the way the simulator does: a new connection per
/// request, with the simulator's credentials.
#[derive(Clone)]
pub struct SimClient {
    base_url: String,
    http: reqwest::Client,
}

impl SimClient {
    /// A client of the server at `base_url`, with no timeout beyond reqwest's defaults.
    pub fn new(base_url: &str) -> Self {
        Self::with_timeout(base_url, Duration::from_secs(30))
    }

    /// A client whose every request (connect and response) must finish within `timeout`.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(timeout)
            .build()
            .expect("building the HTTP client");
        Self {
            base_url: base_url.to_owned(),
            http,
        }
    }

    /// Sends a request; `path` is already encoded. `auth` adds the simulator's header.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: bool,
        body: Option<&str>,
    ) -> reqwest::Result<Reply> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .header("Connection", "close");
        if auth {
            request = request.header("Authorization", SIMULATOR_AUTH);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Reply { status, body })
    }

    fn with_latest(path: String, latest: Option<i64>) -> String {
        match latest {
            Some(latest) if path.contains('?') => format!("{path}&latest={latest}"),
            Some(latest) => format!("{path}?latest={latest}"),
            None => path,
        }
    }

    /// `GET /latest`'s value.
    pub async fn latest(&self) -> reqwest::Result<i64> {
        let reply = self
            .send(reqwest::Method::GET, "/latest", false, None)
            .await?;
        Ok(reply.body["latest"].as_i64().expect("latest is a number"))
    }

    /// `POST /register`.
    pub async fn register(
        &self,
        username: &str,
        email: &str,
        pwd: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let body = serde_json::json!({"username": username, "email": email, "pwd": pwd});
        self.post("/register".into(), false, body, latest).await
    }

    /// `POST /msgs/<user>`.
    pub async fn tweet(
        &self,
        user: &str,
        content: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let path = format!("/msgs/{}", percent_encode(user));
        self.post(
            path,
            true,
            serde_json::json!({ "content": content }),
            latest,
        )
        .await
    }

    /// `POST /fllws/<user>` with `{"follow": target}`.
    pub async fn follow(
        &self,
        user: &str,
        target: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.follow_change(user, "follow", target, latest).await
    }

    /// `POST /fllws/<user>` with `{"unfollow": target}`.
    pub async fn unfollow(
        &self,
        user: &str,
        target: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.follow_change(user, "unfollow", target, latest).await
    }

    async fn follow_change(
        &self,
        user: &str,
        key: &str,
        target: &str,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let path = format!("/fllws/{}", percent_encode(user));
        self.post(path, true, serde_json::json!({ key: target }), latest)
            .await
    }

    async fn post(
        &self,
        path: String,
        auth: bool,
        body: Value,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let body = body.to_string();
        self.send(
            reqwest::Method::POST,
            &Self::with_latest(path, latest),
            auth,
            Some(&body),
        )
        .await
    }

    /// `GET /msgs` (with `no` if given).
    pub async fn public_msgs(
        &self,
        no: Option<i64>,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.listing("/msgs".to_owned(), no, latest).await
    }

    /// `GET /msgs/<user>` (with `no` if given).
    pub async fn user_msgs(
        &self,
        user: &str,
        no: Option<i64>,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.listing(format!("/msgs/{}", percent_encode(user)), no, latest)
            .await
    }

    /// `GET /fllws/<user>` (with `no` if given).
    pub async fn follows(
        &self,
        user: &str,
        no: Option<i64>,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        self.listing(format!("/fllws/{}", percent_encode(user)), no, latest)
            .await
    }

    async fn listing(
        &self,
        path: String,
        no: Option<i64>,
        latest: Option<i64>,
    ) -> reqwest::Result<Reply> {
        let path = match no {
            Some(no) => format!("{path}?no={no}"),
            None => path,
        };
        self.send(
            reqwest::Method::GET,
            &Self::with_latest(path, latest),
            true,
            None,
        )
        .await
    }
}

/// The `(user, content)` pairs of a message listing, in order.
pub fn authored(listing: &Value) -> Vec<(String, String)> {
    listing
        .as_array()
        .expect("a message listing is an array")
        .iter()
        .map(|message| {
            (
                message["user"].as_str().expect("user").to_owned(),
                message["content"].as_str().expect("content").to_owned(),
            )
        })
        .collect()
}

/// The names in a `{"follows": [...]}` body.
pub fn follow_names(body: &Value) -> Vec<String> {
    body["follows"]
        .as_array()
        .expect("follows is an array")
        .iter()
        .map(|name| name.as_str().expect("a name").to_owned())
        .collect()
}

/// Appends a `MessagePosted` event for `author` straight into the log on `conn`, bypassing
/// the command side — for tests that need control over transactions and volume.
pub async fn append_message_event(
    conn: &mut sqlx::PgConnection,
    message_id: &str,
    author: &str,
    content: &str,
) -> i64 {
    let payload = serde_json::to_value(domain::MessageEvent::MessagePosted {
        author: author.to_owned(),
        content: content.to_owned(),
        posted_at: chrono::Utc::now(),
    })
    .expect("serialising an event");
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) \
         VALUES ('message', $1, 1, 'MessagePosted', '1.0', $2, '{}') RETURNING global_position",
    )
    .bind(message_id)
    .bind(payload)
    .fetch_one(conn)
    .await
    .expect("appending an event")
}

/// The timeline projection's checkpoint position.
pub async fn timeline_checkpoint(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT last_position FROM projection_checkpoints WHERE projection = 'timeline' AND version = 1",
    )
    .fetch_one(pool)
    .await
    .expect("reading the timeline checkpoint")
}

/// Waits until every active projection has applied every event in the log; panics if one
/// has not within `timeout`.
pub async fn await_projections_at_head(pool: &PgPool, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let projections = projections::all();
    loop {
        let mut behind = Vec::new();
        let versions = projections::maintenance::versions(pool)
            .await
            .expect("reading the projection versions");
        for version in versions.iter().filter(|version| version.state == "active") {
            let projection = projections
                .iter()
                .find(|projection| projection.name() == version.projection)
                .expect("an active version of a known projection");
            let lag = projections::maintenance::lag(pool, projection.as_ref(), version.checkpoint)
                .await
                .expect("reading a projection's lag");
            if lag.events > 0 {
                behind.push((version.projection.clone(), lag.events));
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projections still behind the log after {timeout:?}: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Rebuilds every projection from position zero into a scratch version and asserts that it
/// equals the active version at the same log position, row for row — the admin tool's
/// `verify`, whose own tests show it catches a differing view.
pub async fn assert_views_equal_a_rebuild(pool: &PgPool) {
    for projection in projections::all() {
        let comparison =
            projections::maintenance::verify(pool, &projection, ProjectorSettings::default())
                .await
                .expect("rebuilding and comparing the views");
        assert!(
            comparison.is_equal(),
            "{} differs from a rebuild: {:#?}",
            projection.name(),
            comparison.tables
        );
    }
}
