//! The simulator API: the JSON endpoints the course's simulator drives, exactly per
//! `spec/simulator-api.md`.
//!
//! Every endpoint but `GET /latest` first stores the `latest` query parameter, then checks
//! authorization, then looks the user up, then reads the body — in that order, as the
//! simulator expects. Writes answer 204 only once the views include them. Each handler's
//! `#[utoipa::path]` is both its route and its OpenAPI description (see [`crate::openapi`]).

mod extract;
mod follows;
mod latest;
mod messages;
mod register;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use base64::Engine as _;
use commands::accounts::Accounts;
use commands::directory::EventStoreDirectory;
use commands::CommandBus;
use domain::UserDirectory as _;
use projections::ReadModels;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::Schema;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;

pub use latest::LatestStore;

/// What the simulator's handlers share.
#[derive(Clone)]
pub struct SimulatorState {
    pub commands: Arc<CommandBus>,
    pub reads: ReadModels,
    pub directory: EventStoreDirectory,
    pub latest: LatestStore,
    pub accounts: Accounts,
    /// The exact `Authorization` header value that grants access.
    pub expected_authorization: Arc<str>,
    /// The cap on `no`.
    pub max_messages: i64,
}

impl SimulatorState {
    /// The `Authorization` value for HTTP Basic credentials `user:password`.
    pub fn basic_authorization(user: &str, password: &str) -> String {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {encoded}")
    }
}

/// The simulator API's routes, with their descriptions.
pub fn router(state: SimulatorState) -> OpenApiRouter {
    let protected = OpenApiRouter::new()
        .routes(routes!(messages::list_all))
        .routes(routes!(messages::list_by_author, messages::post))
        .routes(routes!(follows::list, follows::change))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            require_simulator,
        ));
    let tracked = OpenApiRouter::new()
        .routes(routes!(register::register))
        .merge(protected)
        // Outermost, so `latest` is stored even when authorization or validation fails.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            latest::record,
        ));
    OpenApiRouter::new()
        .routes(routes!(latest::get))
        .merge(tracked)
        .with_state(state)
}

/// The user a `/msgs/{username}` or `/fllws/{username}` operation is about.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct UserPath {
    /// The exact, case-sensitive username, percent-encoded (`Roger%20Histand`).
    #[param(example = "Roger Histand")]
    username: String,
}

/// The query every endpoint but `GET /latest` reads. Only described by this type: handlers
/// read the query as a map, where a repeated key keeps its last value instead of being
/// refused as a duplicate field.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the description only (above).
struct Tracked {
    /// The simulator's action number. Stored whatever the answer (a refusal too), if it is an
    /// integer other than -1; any other value is ignored. Read back by `GET /latest`.
    #[param(schema_with = lenient_integer)]
    latest: Option<String>,
}

/// The query of a listing, beside [`Tracked`]; only described by this type, as that one.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Read by the description only (above).
struct Listing {
    /// How many entries to list: 100 when absent or not an integer, none for 0, and as many
    /// as the server allows (its `max_messages`) when negative or larger.
    #[param(schema_with = lenient_integer)]
    no: Option<String>,
}

/// An integer parameter that tolerates anything: a value that is not an integer is ignored
/// rather than refused, so the description admits any string.
fn lenient_integer() -> Schema {
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
        )
        .item(ObjectBuilder::new().schema_type(Type::String))
        .into()
}

/// Lets through only requests carrying the simulator's exact credentials.
async fn require_simulator(
    State(state): State<SimulatorState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let authorized = request
        .headers()
        .get(AUTHORIZATION)
        // In constant time, so that how long a refusal takes says nothing of how much of
        // the guess was right.
        .is_some_and(|value| {
            bool::from(
                value
                    .as_bytes()
                    .ct_eq(state.expected_authorization.as_bytes()),
            )
        });
    if authorized {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::NotAuthorized)
    }
}

/// The prologue of a listing of `username`'s things: the user must exist (404), and the
/// query's `no` says how many to list.
async fn listing_limit_for(
    state: &SimulatorState,
    username: &str,
    query: &HashMap<String, String>,
) -> Result<i64, ApiError> {
    if !state.reads.user_exists(username).await? {
        return Err(ApiError::unknown_user(username));
    }
    Ok(listing_limit(
        query.get("no").map(String::as_str),
        state.max_messages,
    ))
}

/// How many entries a listing asked for with `no`: 100 when absent or not an integer, none
/// for 0, as many as allowed when negative, and never more than `max`.
fn listing_limit(no: Option<&str>, max: i64) -> i64 {
    const DEFAULT: i64 = 100;
    match no.map(|value| value.parse::<i64>()) {
        Some(Ok(n)) if n < 0 => max,
        Some(Ok(n)) => n.min(max),
        Some(Err(_)) | None => DEFAULT.min(max),
    }
}

/// The answer to a write whose body was bad. The user lookup comes before the body check,
/// so an unknown user is a 404 even then; only a bad body pays for this extra lookup (a good
/// one reaches the aggregate, which knows whether its user exists).
async fn user_lookup_then(
    state: &SimulatorState,
    username: &str,
    body_error: ApiError,
) -> ApiError {
    match state.directory.is_registered(username).await {
        Ok(true) => body_error,
        Ok(false) => ApiError::unknown_user(username),
        Err(err) => err.into(),
    }
}

/// Parses a JSON body; anything unreadable is a 400, never a 500.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|err| ApiError::BadRequest(format!("Invalid request body: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_limit_follows_the_spec() {
        assert_eq!(listing_limit(None, 10_000), 100);
        assert_eq!(listing_limit(Some("abc"), 10_000), 100);
        assert_eq!(listing_limit(Some(""), 10_000), 100);
        assert_eq!(listing_limit(Some("0"), 10_000), 0);
        assert_eq!(listing_limit(Some("7"), 10_000), 7);
        assert_eq!(listing_limit(Some("-1"), 10_000), 10_000);
        assert_eq!(listing_limit(Some("99999999"), 10_000), 10_000);
        assert_eq!(listing_limit(None, 50), 50);
    }

    #[test]
    fn the_default_credentials_give_the_simulators_header() {
        assert_eq!(
            SimulatorState::basic_authorization("simulator", "super_safe!"),
            "Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh"
        );
    }
}
