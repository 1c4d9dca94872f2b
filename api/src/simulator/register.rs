//! `POST /register`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use domain::registration::{self, RegistrationError};
use domain::{UserCommand, UserDirectory as _};
use serde::Deserialize;

use super::{parse_body, SimulatorState};
use crate::error::ApiError;
use crate::request_context::RequestContext;

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
    registration::validate(&username, &email, &pwd)
        .map_err(|err| ApiError::BadRequest(err.to_string()))?;
    // Checked before hashing so a duplicate costs a lookup, not 19 MiB and tens of ms; the
    // aggregate still decides, should two registrations of one name race.
    if state.directory.is_registered(&username).await? {
        return Err(ApiError::BadRequest(
            RegistrationError::UsernameTaken.to_string(),
        ));
    }
    let password_hash = state.hasher.hash(pwd).await?;
    let command = UserCommand::Register {
        username: username.clone(),
        email,
        password_hash,
        registered_at: context.received_at,
    };
    state.commands.user(&username, command, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}
