//! Building and running the server: database, projectors, both listeners (the simulator API
//! and the browser pages), the supervised background tasks, and a clean shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware;
use axum::response::IntoResponse;
use axum::Router;
use commands::accounts::Accounts;
use commands::directory::EventStoreDirectory;
use commands::passwords::PasswordHasher;
use commands::{CommandBus, CommandSettings};
use database::embedded_postgres::EmbeddedPostgres;
use database::keyring::{self, Keyring};
use database::outage::DatabaseGate;
use database::{Database, Purpose};
use projections::{
    ChatFeed, LiveFeed, Progress, ProgressListener, ProjectorSettings, ReadModels, Supervisor,
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_sessions_sqlx_store::PostgresStore;
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::background::BackgroundTasks;
use crate::config::Config;
use crate::error::ApiError;
use crate::health::{self, HealthState};
use crate::monitoring::{self, Metrics};
use crate::openapi;
use crate::outage::{self, Guard};
use crate::request_context::REQUEST_ID_HEADER;
use crate::request_limits::{self, RefusedRequest, RequestLimits};
use crate::serving;
use crate::simulator::{self, LatestStore, SimulatorState};
use crate::web::error::WebError;
use crate::web::proxy::TrustedProxies;
use crate::web::rate_limit::AttemptBudgets;
use crate::web::{self, WebState};

/// A built server, listening but not yet serving.
pub struct Application {
    api_listener: TcpListener,
    api_router: Router,
    web_listener: TcpListener,
    web_router: Router,
    /// How long a client may take to send a request's headers.
    client_timeout: Duration,
    pool: PgPool,
    views: Views,
    metrics: Metrics,
    sessions: PostgresStore,
    budgets: AttemptBudgets,
    /// Announces each browser session that ends, to the live streams it opened.
    sessions_ended: broadcast::Sender<Arc<str>>,
    /// Fires when shutdown begins; live streams end on it, so the listeners can drain.
    stopping: CancellationToken,
    forgotten_users: ForgottenUsers,
    embedded: Option<EmbeddedPostgres>,
}

/// How many forgettings announced by other replicas may wait to be handled.
const FORGOTTEN_BUFFER: usize = 256;

/// What this process remembers of users that another replica may forget: the directory's
/// "registered" answers and the unwrapped keys. Each forgetting is announced on
/// [`keyring::FORGOTTEN_CHANNEL`], and both are dropped here.
#[derive(Clone)]
struct ForgottenUsers {
    directory: EventStoreDirectory,
    announced: broadcast::Sender<Arc<str>>,
}

impl ForgottenUsers {
    /// Drops what this process remembers of each user announced forgotten, until `cancel`.
    async fn evict(self, keys: Keyring, cancel: CancellationToken) {
        let mut announced = self.announced.subscribe();
        loop {
            let username = tokio::select! {
                () = cancel.cancelled() => return,
                received = announced.recv() => received,
            };
            match username {
                Ok(username) => {
                    self.directory.forget(&username);
                    keys.evict(&username);
                }
                // Missed announcements cannot be named: memory is what they concerned, and
                // an entry kept too long is harmless (see `database::keyring`).
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "missed announcements of forgotten users");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// The query side as this process runs it: the projectors, where each view has got, and the
/// feeds of live changes.
struct Views {
    /// The data keys that open personal fields, for the projectors and the chat feed.
    keys: Keyring,
    progress: Progress,
    supervisor: Arc<Supervisor>,
    reads: ReadModels,
    live: LiveFeed,
    chat: ChatFeed,
}

/// The command side as both listeners use it.
struct CommandSide {
    commands: Arc<CommandBus>,
    accounts: Accounts,
    directory: EventStoreDirectory,
}

impl Application {
    /// Connects to (or starts) the database, applies migrations, prepares the projections
    /// and binds the listeners. Port 0 binds a free port; see [`Application::api_addr`] and
    /// [`Application::web_addr`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Bound first: a taken port then fails before an embedded database is started.
        let api_listener = bind(config.api_addr, "API").await?;
        let web_listener = bind(config.web_addr, "web").await?;
        let mut database = database::connect(&config.database, Purpose::Serve).await?;
        create_missing_views(database.setup_pool()).await?;
        database.finish_setup().await;
        let Database {
            pool,
            keys,
            embedded,
            ..
        } = database;
        let views = Views::prepare(&pool, keys, &config).await?;
        let command_side = CommandSide::new(&pool, &views, &config);
        let metrics = Metrics::install();
        let gate = DatabaseGate::new(pool.clone());
        let limits = RequestLimits {
            max_body_bytes: config.max_body_bytes,
            body_deadline: config.client_timeout(),
        };
        let api_router = api_router(&config, &pool, &views, &command_side, &metrics, &gate)?;
        let budgets = AttemptBudgets::new(
            pool.clone(),
            config.login_attempts_per_minute,
            config.registrations_per_hour,
        );
        let stopping = CancellationToken::new();
        let sessions = web::session::store(pool.clone());
        let (sessions_ended, _) = broadcast::channel(web::session::SESSIONS_ENDED_BUFFER);
        let forgotten_users = ForgottenUsers {
            directory: command_side.directory.clone(),
            announced: broadcast::channel(FORGOTTEN_BUFFER).0,
        };
        let web_state = WebState {
            accounts: command_side.accounts,
            commands: command_side.commands,
            reads: views.reads.clone(),
            live: views.live.clone(),
            chat: views.chat.clone(),
            avatars: config.avatars,
            budgets: budgets.clone(),
            stream_limits: web::stream_limits::StreamLimits::new(
                config.live_streams_per_address,
                config.live_streams_per_user,
            ),
            proxies: Arc::new(TrustedProxies::new(
                config.trusted_proxies.clone(),
                client_ip_header(&config)?,
            )),
            sessions_ended: sessions_ended.clone(),
            stopping: stopping.clone(),
        };
        let key = web::session::signing_key(config.session_key()?.as_deref(), &pool).await?;
        let web_router = web::router(web_state, sessions.clone(), key, &gate);
        Ok(Self {
            api_listener,
            api_router: with_request_layers::<ApiError>(api_router, limits, "api"),
            web_listener,
            web_router: with_request_layers::<WebError>(web_router, limits, "web"),
            client_timeout: config.client_timeout(),
            pool,
            views,
            metrics,
            sessions,
            budgets,
            sessions_ended,
            stopping,
            forgotten_users,
            embedded,
        })
    }

    /// The address the simulator API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The address the browser pages listen on.
    pub fn web_addr(&self) -> SocketAddr {
        self.web_listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes, then drains requests in
    /// flight, stops the projectors between batches, closes the pool and stops the embedded
    /// database if this process started it.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let api_addr = self.api_addr();
        let web_addr = self.web_addr();
        let cancel = CancellationToken::new();
        let background = self.background_tasks(cancel.clone());
        let supervision = tokio::spawn(background.supervise());
        tracing::info!(address = %api_addr, "simulator API listening");
        tracing::info!(address = %web_addr, "web pages listening");

        let stopping = self.stopping;
        let signalled = stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            signalled.cancel();
        });
        // Each listener stops accepting on the signal, then drains its requests.
        let api = serving::serve(
            self.api_listener,
            self.api_router,
            self.client_timeout,
            stopping.clone(),
        );
        let pages = serving::serve(
            self.web_listener,
            self.web_router,
            self.client_timeout,
            stopping,
        );
        tokio::join!(api, pages);
        tracing::info!("requests drained; stopping background tasks");
        cancel.cancel();
        if let Err(err) = supervision.await {
            tracing::error!(error = %err, "the background tasks' supervision failed");
        }
        self.pool.close().await;
        if let Some(embedded) = self.embedded {
            embedded.stop().await?;
        }
        Ok(())
    }

    /// Every task the server runs beside its listeners, each restarted should it fail (see
    /// [`BackgroundTasks`]), all ending when `cancel` fires.
    fn background_tasks(&self, cancel: CancellationToken) -> BackgroundTasks {
        let mut tasks = BackgroundTasks::new(cancel);
        let Views {
            progress,
            supervisor,
            live,
            chat,
            ..
        } = &self.views;
        tasks.spawn_projectors(supervisor);
        let (pool, progress) = (self.pool.clone(), progress.clone());
        tasks.spawn("progress listener", {
            let progress = progress.clone();
            let sessions_ended = self.sessions_ended.clone();
            let forgotten = self.forgotten_users.announced.clone();
            move |cancel| {
                ProgressListener::new(progress.clone())
                    .forwarding(web::session::SESSIONS_ENDED_CHANNEL, sessions_ended.clone())
                    .forwarding(keyring::FORGOTTEN_CHANNEL, forgotten.clone())
                    .run(cancel)
            }
        });
        tasks.spawn("forgotten users", {
            let (forgotten, keys) = (self.forgotten_users.clone(), self.views.keys.clone());
            move |cancel| forgotten.clone().evict(keys.clone(), cancel)
        });
        tasks.spawn("live timeline feed", {
            let (live, pool, progress) = (live.clone(), pool.clone(), progress.clone());
            move |cancel| live.clone().run(pool.clone(), progress.clone(), cancel)
        });
        tasks.spawn("live chat feed", {
            let (chat, pool, progress) = (chat.clone(), pool.clone(), progress.clone());
            let keys = self.views.keys.clone();
            move |cancel| {
                chat.clone()
                    .run(pool.clone(), keys.clone(), progress.clone(), cancel)
            }
        });
        tasks.spawn("metrics collector", {
            let metrics = self.metrics.clone();
            move |cancel| {
                monitoring::collect(pool.clone(), progress.clone(), metrics.clone(), cancel)
            }
        });
        tasks.spawn("session sweeper", {
            let (sessions, budgets) = (self.sessions.clone(), self.budgets.clone());
            move |cancel| web::housekeeping(sessions.clone(), budgets.clone(), cancel)
        });
        tasks
    }
}

/// Binds `address` for the `listener` (named in the error).
async fn bind(address: SocketAddr, listener: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .with_context(|| format!("binding the {listener} address {address}"))
}

/// The header a trusted proxy puts the client's address in, if one is configured.
fn client_ip_header(config: &Config) -> anyhow::Result<Option<HeaderName>> {
    config
        .client_ip_header
        .as_deref()
        .map(HeaderName::try_from)
        .transpose()
        .context("MINITWIT_CLIENT_IP_HEADER is not a header name")
}

/// Creates the views a fresh database lacks, on `setup` (see [`Database::setup_pool`]).
async fn create_missing_views(setup: &PgPool) -> anyhow::Result<()> {
    projections::maintenance::create_missing_views(setup, &projections::all())
        .await
        .map_err(|err| database::roles::explain_refused_setup(err, "the database has no views yet"))
}

impl Views {
    /// Reads where each projection's active version has got.
    async fn prepare(pool: &PgPool, keys: Keyring, config: &Config) -> anyhow::Result<Self> {
        let projections = projections::all();
        let progress = Progress::new(pool.clone(), &projections);
        let settings = ProjectorSettings {
            batch_size: config.projector_batch_size,
            poll_interval: Duration::from_millis(config.projector_poll_ms),
            keys: keys.clone(),
            ..ProjectorSettings::default()
        };
        let supervisor = Supervisor::new(pool.clone(), progress.clone(), settings, projections);
        supervisor.prepare().await?;
        Ok(Self {
            keys,
            reads: ReadModels::new(pool.clone(), progress.clone()),
            progress,
            supervisor: Arc::new(supervisor),
            live: LiveFeed::new(),
            chat: ChatFeed::new(),
        })
    }
}

impl CommandSide {
    /// The bus, waiting on `views` for read-your-writes, and the accounts built on it.
    fn new(pool: &PgPool, views: &Views, config: &Config) -> Self {
        let commands = Arc::new(CommandBus::new(
            pool.clone(),
            views.keys.clone(),
            views.progress.clone(),
            CommandSettings {
                retries: config.command_retries,
                read_your_writes_timeout: config.read_your_writes_timeout(),
                chat_policy: config.chat_policy.into(),
                cached_events: config.cached_events,
            },
        ));
        let directory = commands.directory().clone();
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let hasher = PasswordHasher::new(config.hash_concurrency.unwrap_or(cpus));
        let accounts = Accounts::new(
            commands.clone(),
            directory.clone(),
            views.reads.clone(),
            hasher,
        );
        Self {
            commands,
            accounts,
            directory,
        }
    }
}

/// The API listener's routes: the simulator's, behind the breaker, and the operations'
/// (health and metrics), which stay outside it — liveness must answer through an outage, and
/// readiness reports one by its own checks. All described at `/openapi.json`.
fn api_router(
    config: &Config,
    pool: &PgPool,
    views: &Views,
    command_side: &CommandSide,
    metrics: &Metrics,
    gate: &DatabaseGate,
) -> anyhow::Result<Router> {
    let simulator_state = SimulatorState {
        commands: command_side.commands.clone(),
        reads: views.reads.clone(),
        directory: command_side.directory.clone(),
        latest: LatestStore::new(pool.clone()),
        accounts: command_side.accounts.clone(),
        expected_authorization: SimulatorState::basic_authorization(
            &config.simulator_user,
            &simulator_password(config)?,
        )
        .into(),
        max_messages: config.max_messages,
    };
    let operations = OpenApiRouter::new()
        .routes(routes!(monitoring::metrics_endpoint))
        .with_state(metrics.clone())
        .merge(
            OpenApiRouter::new()
                .routes(routes!(health::live))
                .routes(routes!(health::ready))
                .with_state(HealthState {
                    pool: pool.clone(),
                    progress: views.progress.clone(),
                    max_projection_lag: Duration::from_secs(
                        config.ready_max_projection_lag_seconds,
                    ),
                }),
        );
    let simulator_routes = simulator::router(simulator_state).layer(
        middleware::from_fn_with_state(Guard::new::<ApiError>(gate, "api"), outage::guard),
    );
    Ok(openapi::serve_described(simulator_routes.merge(operations)))
}

/// `router` with what every request to the `listener` passes through: the caps on bodies
/// and URIs (refusals worded as `E`), then [`with_http_layers`].
fn with_request_layers<E>(router: Router, limits: RequestLimits, listener: &'static str) -> Router
where
    E: From<RefusedRequest> + IntoResponse + 'static,
{
    with_http_layers(
        router
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .layer(middleware::from_fn_with_state(
                limits,
                request_limits::enforce::<E>,
            )),
        listener,
    )
}

/// Request ids (kept from the client or proxy if given, else generated, and echoed back), one
/// log line per request, labelled with the matched route template, the RED metrics of the
/// `listener`'s requests, and compression for clients that accept it (bodies over 32 bytes;
/// never images or event streams).
fn with_http_layers(router: Router, listener: &'static str) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", MatchedPath::as_str);
            let request_id = request
                .headers()
                .get(REQUEST_ID_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("request", method = %request.method(), route, request_id)
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO))
        // Not a second line per 5xx at error level: a 500's cause is logged where it is
        // mapped (`error`), and during a database outage every request is a 503, which the
        // breaker logs once.
        .on_failure(());
    router.layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(
                listener,
                monitoring::track_requests,
            ))
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(trace)
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(CompressionLayer::new()),
    )
}

/// The simulator's password, with a warning when it is the course's published one: then
/// anyone can post, follow and unfollow as every user through the API, unless the proxy in
/// front lets only the simulator's network reach it.
fn simulator_password(config: &Config) -> anyhow::Result<String> {
    let password = config.simulator_password()?;
    if password == crate::config::COURSE_SIMULATOR_PASSWORD {
        tracing::warn!(
            "the simulator API accepts the course's published password: set \
             MINITWIT_SIMULATOR_PASSWORD (or _FILE) to a secret of your own, or let only the \
             simulator's network reach the API"
        );
    }
    Ok(password)
}
