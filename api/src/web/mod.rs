//! The browser side: the original MiniTwit's pages, served from the projected views on their
//! own listener (`MINITWIT_WEB_ADDR`), exactly as `spec/web-ui.md` describes.
//!
//! Layout:
//! - [`timelines`] — `/`, `/public`, `/{username}`, paged by keyset ([`paging`]); their live
//!   streams in [`live`].
//! - [`account`] — sign up, sign in (rate-limited by [`rate_limit`]), sign out;
//!   [`settings`] — a user's own account: password, email, their data, deleting it.
//! - [`actions`] — posting, following, unfollowing, blocking and unblocking: commands
//!   through the shared bus.
//! - [`chat`] — private messages as JSON and live, for the chat pages' script, with their own
//!   OpenAPI document;
//!   [`chat_pages`] — the inbox and conversation pages.
//! - [`session`] — sessions in PostgreSQL behind signed cookies; flash messages.
//! - [`cross_origin`] — refusing cross-site state changes (CSRF).
//! - [`pages`] — templates and view models; [`assets`] — the static files and their
//!   versioned URLs, served by [`static_files`] with the identicons [`avatar`] draws;
//!   [`form`] — form bodies; [`error`] — error pages.
//!
//! Every response carries security headers (a CSP that allows no inline script among them);
//! compression is added with the layers both listeners share (`startup`).

pub mod account;
pub mod actions;
pub mod assets;
pub mod avatar;
pub mod chat;
pub mod chat_pages;
pub mod cross_origin;
pub mod error;
pub mod form;
pub mod live;
pub mod pages;
pub mod paging;
pub mod proxy;
pub mod rate_limit;
pub mod session;
pub mod settings;
pub mod static_files;
pub mod stream_limits;
pub mod timelines;

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, VARY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use commands::accounts::Accounts;
use commands::CommandBus;
use database::outage::DatabaseGate;
use projections::{ChatFeed, LiveFeed, ReadModels};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::Key;
use tower_sessions::ExpiredDeletion as _;
use tower_sessions_sqlx_store::PostgresStore;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::AvatarSource;
use crate::error::ApiError;
use crate::outage::{self, Guard};
use error::WebError;
use rate_limit::AttemptBudgets;

/// What the pages' handlers share.
#[derive(Clone)]
pub struct WebState {
    pub accounts: Accounts,
    pub commands: Arc<CommandBus>,
    pub reads: ReadModels,
    pub live: LiveFeed,
    pub chat: ChatFeed,
    pub avatars: AvatarSource,
    /// The sign-in and registration budgets, shared by every replica.
    pub budgets: AttemptBudgets,
    /// The bounds on open live streams, and their counts.
    pub stream_limits: Arc<stream_limits::StreamLimits>,
    /// Announces each browser session that ends (see [`session::SessionEnd`]).
    pub sessions_ended: tokio::sync::broadcast::Sender<Arc<str>>,
    /// The proxies whose word on the client's address and scheme is believed.
    pub proxies: Arc<proxy::TrustedProxies>,
    /// Fires when the server starts shutting down, so live streams end and let it drain.
    pub stopping: CancellationToken,
}

/// Scripts and styles only from our own files; images also from Gravatar; nothing may frame
/// the pages or take their forms elsewhere.
const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'self'; \
     img-src 'self' https://www.gravatar.com; script-src 'self'; style-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
     object-src 'none'";

/// The pages' routes, with sessions signed by `key` and kept in `store`; those that need
/// the database answer 503 at once while `gate` says it cannot be reached.
pub fn router(state: WebState, store: PostgresStore, key: Key, gate: &DatabaseGate) -> Router {
    let proxies = state.proxies.clone();
    // The original changed state on GET here; those GETs keep working, but only same-site.
    let sign_out = Router::new()
        .route("/logout", get(account::logout))
        .route_layer(middleware::from_fn(cross_origin::protect_every_method));
    let user_actions_on_get = Router::new()
        .route(
            "/{username}/follow",
            get(actions::follow).post(actions::follow),
        )
        .route(
            "/{username}/unfollow",
            get(actions::unfollow).post(actions::unfollow),
        )
        .route_layer(middleware::from_fn(cross_origin::protect_every_method));
    let user_pages = Router::new()
        .route(
            "/{username}/block",
            get(actions::confirm_block).post(actions::block),
        )
        .route("/{username}/unblock", post(actions::unblock))
        .route("/{username}", get(timelines::user))
        .merge(user_actions_on_get);
    let pages = Router::new()
        .route("/", get(timelines::mine))
        .route("/public", get(timelines::public))
        .route("/login", get(account::login_form).post(account::login))
        .route(
            "/register",
            get(account::register_form).post(account::register),
        )
        .route("/settings", get(settings::page))
        .route("/settings/password", post(settings::change_password))
        .route("/settings/email", post(settings::change_email))
        .route("/settings/data", get(settings::download))
        .route("/settings/delete", post(settings::delete))
        .route("/add_message", post(actions::add_message))
        .route("/messages", get(chat_pages::inbox))
        .route(
            "/messages/{partner}",
            get(chat_pages::conversation).post(chat_pages::send),
        )
        .nest(pages::RESERVED_NAMES_PREFIX, user_pages.clone())
        .merge(user_pages)
        .merge(sign_out)
        .route_layer(middleware::from_fn_with_state(
            Guard::new::<WebError>(gate, "web"),
            outage::guard,
        ));
    // The chat's JSON routes answer in JSON, an outage included, and describe themselves.
    let chat_api = chat::described(
        OpenApiRouter::new()
            .routes(routes!(chat::inbox))
            .routes(routes!(chat::live))
            .routes(routes!(chat::conversation, chat::send))
            .routes(routes!(chat::mark_read))
            .route_layer(middleware::from_fn_with_state(
                Guard::new::<ApiError>(gate, "web"),
                outage::guard,
            )),
    );
    // Static files need no database, so they are served through an outage too.
    pages
        .merge(chat_api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            stream_limits::bound_live_streams,
        ))
        .route("/static/{name}", get(static_files::file))
        .route("/static/avatars/{file}", get(static_files::avatar))
        .fallback(|| async { WebError::NotFound("There is no such page.".to_owned()) })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(security_header(
                    CONTENT_SECURITY_POLICY,
                    CONTENT_SECURITY_POLICY_VALUE,
                ))
                .layer(security_header(X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(security_header(REFERRER_POLICY, "same-origin"))
                .layer(security_header(X_FRAME_OPTIONS, "DENY"))
                // Timeline URLs answer pages or live streams by `Accept`.
                .layer(SetResponseHeaderLayer::appending(
                    VARY,
                    HeaderValue::from_static("accept"),
                ))
                .layer(cross_origin::unsafe_methods_layer())
                .layer(middleware::from_fn_with_state(
                    proxies,
                    session::mark_secure_over_tls,
                ))
                .layer(session::layer(store, key)),
        )
}

fn security_header(
    name: axum::http::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

/// The pages' housekeeping, until `cancel` fires: deleting expired sessions and forgetting
/// refilled budgets, once a minute.
pub async fn housekeeping(
    store: PostgresStore,
    budgets: AttemptBudgets,
    cancel: CancellationToken,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(err) = store.delete_expired().await {
            tracing::warn!(error = %err, "could not delete expired sessions");
        }
        if let Err(err) = budgets.forget_idle().await {
            tracing::warn!(error = %err, "could not forget refilled attempt budgets");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    /// A header map of constant pairs, for the request-inspecting functions' tests.
    pub(crate) fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    HeaderValue::from_static(value),
                )
            })
            .collect()
    }
}
