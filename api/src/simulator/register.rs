//! `POST /register`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use commands::accounts::NewAccount;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{parse_body, SimulatorState, Tracked};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::answers::{DatabaseFailures, WriteConflict};
use crate::request_context::RequestContext;

/// A new account. A missing field counts as empty, so it gets the rule's own message ("You
/// have to enter a username") rather than a generic parse error.
#[derive(Deserialize, ToSchema)]
struct Registration {
    /// Not taken, not one of the site's own names (`public`, `login`, …), no NUL character.
    #[serde(default)]
    #[schema(
        required = true,
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*$",
        example = "Roger Histand"
    )]
    username: String,
    #[serde(default)]
    #[schema(
        required = true,
        max_length = 254,
        pattern = "^[^\\u0000]*@[^\\u0000]*$",
        example = "roger@histand.example"
    )]
    email: String,
    #[serde(default)]
    #[schema(required = true, min_length = 1, max_length = 1024)]
    pwd: String,
}

/// Registers a user.
#[utoipa::path(
    post,
    path = "/register",
    operation_id = "register",
    tag = "simulator",
    params(Tracked),
    request_body(content = Registration, content_type = "application/json"),
    responses(
        (status = 204, description = "Registered"),
        (status = 400, description = "The body is not a JSON object of strings, or breaks the first of these rules, whose `error_msg` it carries: \
            username empty (\"You have to enter a username\"); email empty or without `@` (\"You have to enter a valid email address\"); \
            pwd empty (\"You have to enter a password\"); username taken (\"The username is already taken\"). \
            A username or email holding a NUL character is refused too, as are a username over 100 characters, \
            an email over 254 and a password over 1024 (each with its own `error_msg`).", body = ErrorBody),
        WriteConflict,
        DatabaseFailures,
    ),
)]
pub(super) async fn register(
    State(state): State<SimulatorState>,
    RequestContext(context): RequestContext,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let Registration {
        username,
        email,
        pwd,
    } = parse_body(&body)?;
    let account = NewAccount {
        username,
        email,
        password: pwd,
        password_repeated: None,
    };
    state.accounts.register(account, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}
