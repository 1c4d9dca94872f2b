//! The real server running in the test's own process, on random ports, over a fresh database
//! ([`spawn_app`]). [`crate::server_process`] runs the real binary in a child process instead.

use api::{Application, Config};
use clap::Parser;
use tokio::sync::oneshot;

use crate::database::{TestDatabase, TEST_MASTER_KEY};
use crate::sim_client::SimClient;

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
        "--master-key",
        TEST_MASTER_KEY,
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
    spawn_app_on_configured(TestDatabase::create().await, configure).await
}

/// Starts the server on `db`.
pub async fn spawn_app_on(db: TestDatabase) -> TestApp {
    spawn_app_on_configured(db, |_| {}).await
}

/// Starts the server on `db`, configured by `configure` over the test configuration.
pub async fn spawn_app_on_configured(
    db: TestDatabase,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(&db.server_url);
    configure(&mut config);
    start_app(db, config).await
}

/// Why the server refuses to start on `database_url` (it must refuse), with every cause.
pub async fn refusal_to_start(database_url: &str) -> String {
    refusal_to_start_with(database_url, |_| {}).await
}

/// Why the server, configured by `configure` over the test configuration, refuses to start on
/// `database_url` (it must refuse), with every cause.
pub async fn refusal_to_start_with(
    database_url: &str,
    configure: impl FnOnce(&mut Config),
) -> String {
    let mut config = test_config(database_url);
    configure(&mut config);
    let refused = Application::build(config)
        .await
        .err()
        .expect("the server refuses to start");
    format!("{refused:#}")
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
