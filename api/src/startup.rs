//! Building and running the server: database, projectors, both listeners (the simulator API
//! and the browser pages), and a clean shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware;
use axum::Router;
use projections::{
    ChatFeed, LiveFeed, Progress, ProgressListener, ProjectorSettings, ReadModels, Supervisor,
};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tower_sessions_sqlx_store::PostgresStore;
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::error::ApiError;
use crate::health::{self, HealthState};
use crate::monitoring::{self, Metrics};
use crate::openapi;
use crate::outage::{self, Guard};
use crate::request_context::REQUEST_ID_HEADER;
use crate::request_limits::{self, RequestLimits};
use crate::serving;
use crate::simulator::{self, LatestStore, SimulatorState};
use crate::web::error::WebError;
use crate::web::rate_limit::LoginLimiter;
use crate::web::{self, WebState};
use commands::accounts::Accounts;
use commands::directory::EventStoreDirectory;
use commands::passwords::PasswordHasher;
use commands::{CommandBus, CommandSettings};
use database::embedded_postgres::EmbeddedPostgres;
use database::outage::DatabaseGate;
use database::Database;

/// A built server, listening but not yet serving.
pub struct Application {
    api_listener: TcpListener,
    api_router: Router,
    web_listener: TcpListener,
    web_router: Router,
    /// How long a client may take to send a request's headers.
    client_timeout: Duration,
    pool: PgPool,
    progress: Progress,
    supervisor: Supervisor,
    live: LiveFeed,
    chat: ChatFeed,
    metrics: Metrics,
    sessions: PostgresStore,
    login_limiter: Arc<LoginLimiter>,
    /// Fires when shutdown begins; live streams end on it, so the listeners can drain.
    stopping: CancellationToken,
    embedded: Option<EmbeddedPostgres>,
}

impl Application {
    /// Connects to (or starts) the database, applies migrations, prepares the projections
    /// and binds the listeners. Port 0 binds a free port; see [`Application::api_addr`] and
    /// [`Application::web_addr`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Bound first: a taken port then fails before an embedded database is started.
        let api_listener = TcpListener::bind(config.api_addr)
            .await
            .with_context(|| format!("binding the API address {}", config.api_addr))?;
        let web_listener = TcpListener::bind(config.web_addr)
            .await
            .with_context(|| format!("binding the web address {}", config.web_addr))?;
        let session_key = config.session_key()?;
        let client_ip_header = config
            .client_ip_header
            .as_deref()
            .map(axum::http::HeaderName::try_from)
            .transpose()
            .context("MINITWIT_CLIENT_IP_HEADER is not a header name")?;
        let Database { pool, embedded } = database::connect(&config.database).await?;
        let projections = projections::all();
        let progress = Progress::new(pool.clone(), &projections);
        let settings = ProjectorSettings {
            batch_size: config.projector_batch_size,
            poll_interval: Duration::from_millis(config.projector_poll_ms),
            ..ProjectorSettings::default()
        };
        let supervisor = Supervisor::new(pool.clone(), progress.clone(), settings, projections);
        supervisor.prepare().await?;

        let commands = Arc::new(CommandBus::new(
            pool.clone(),
            progress.clone(),
            CommandSettings {
                retries: config.command_retries,
                read_your_writes_timeout: config.read_your_writes_timeout(),
                chat_policy: config.chat_policy.into(),
            },
        ));
        let reads = ReadModels::new(pool.clone(), progress.clone());
        let directory = EventStoreDirectory::new(pool.clone());
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        let hasher = PasswordHasher::new(config.hash_concurrency.unwrap_or(cpus));
        let accounts = Accounts::new(commands.clone(), directory.clone(), reads.clone(), hasher);
        let simulator_state = SimulatorState {
            commands: commands.clone(),
            reads: reads.clone(),
            directory,
            latest: LatestStore::new(pool.clone()),
            accounts: accounts.clone(),
            expected_authorization: SimulatorState::basic_authorization(
                &config.simulator_user,
                &config.simulator_password()?,
            )
            .into(),
            max_messages: config.max_messages,
        };
        let metrics = Metrics::install();
        let operations = OpenApiRouter::new()
            .routes(routes!(monitoring::metrics_endpoint))
            .with_state(metrics.clone())
            .merge(
                OpenApiRouter::new()
                    .routes(routes!(health::live))
                    .routes(routes!(health::ready))
                    .with_state(HealthState {
                        pool: pool.clone(),
                        progress: progress.clone(),
                        max_projection_lag: Duration::from_secs(
                            config.ready_max_projection_lag_seconds,
                        ),
                    }),
            );
        let limits = RequestLimits {
            max_body_bytes: config.max_body_bytes,
            body_deadline: config.client_timeout(),
        };
        // Health and metrics stay outside the breaker: liveness must answer through an
        // outage, and readiness reports it by its own checks.
        let gate = DatabaseGate::new(pool.clone());
        let simulator_routes = simulator::router(simulator_state).layer(
            middleware::from_fn_with_state(Guard::new::<ApiError>(&gate, "api"), outage::guard),
        );
        let api_router = with_http_layers(
            openapi::serve_described(simulator_routes.merge(operations))
                .layer(DefaultBodyLimit::max(limits.max_body_bytes))
                .layer(middleware::from_fn_with_state(
                    limits,
                    request_limits::enforce::<ApiError>,
                )),
            "api",
        );

        let live = LiveFeed::new();
        let chat = ChatFeed::new();
        let login_limiter = Arc::new(LoginLimiter::new(config.login_attempts_per_minute));
        let stopping = CancellationToken::new();
        let sessions = web::session::store(pool.clone());
        let key = web::session::signing_key(session_key.as_deref(), &pool).await?;
        let web_state = WebState {
            accounts,
            commands,
            reads,
            live: live.clone(),
            chat: chat.clone(),
            avatars: config.avatars,
            login_limiter: login_limiter.clone(),
            client_ip_header,
            stopping: stopping.clone(),
        };
        let web_router = with_http_layers(
            web::router(web_state, sessions.clone(), key, &gate)
                .layer(DefaultBodyLimit::max(limits.max_body_bytes))
                .layer(middleware::from_fn_with_state(
                    limits,
                    request_limits::enforce::<WebError>,
                )),
            "web",
        );
        Ok(Self {
            api_listener,
            api_router,
            web_listener,
            web_router,
            client_timeout: config.client_timeout(),
            pool,
            progress,
            supervisor,
            live,
            chat,
            metrics,
            sessions,
            login_limiter,
            stopping,
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
        let mut background = JoinSet::new();
        background.spawn(self.supervisor.run(cancel.clone()));
        background.spawn(
            self.live
                .run(self.pool.clone(), self.progress.clone(), cancel.clone()),
        );
        background.spawn(
            self.chat
                .run(self.pool.clone(), self.progress.clone(), cancel.clone()),
        );
        background.spawn(monitoring::collect(
            self.pool.clone(),
            self.progress.clone(),
            self.metrics,
            cancel.clone(),
        ));
        background.spawn(web::housekeeping(
            self.sessions,
            self.login_limiter,
            cancel.clone(),
        ));
        background.spawn(ProgressListener::new(self.progress.clone()).run(cancel.clone()));
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
        while let Some(joined) = background.join_next().await {
            if let Err(err) = joined {
                tracing::error!(error = %err, "a background task panicked");
            }
        }
        self.pool.close().await;
        if let Some(embedded) = self.embedded {
            embedded.stop().await?;
        }
        Ok(())
    }
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
