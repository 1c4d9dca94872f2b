//! `POST /register`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{parse_body, SimulatorState};
use crate::error::ApiError;
use crate::request_context::RequestContext;
use crate::users::NewAccount;

/// A missing field counts as empty, so it gets the rule's own message ("You have to enter
/// a username") rather than a generic parse error.
#[derive(Deserialize)]
struct Registration {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    pwd: String,
}

pub(super) async fn register(
    State(state): State<SimulatorState>,
    context: RequestContext,
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
    state.users.register(account, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}
