//! `GET /fllws/<username>` and `POST /fllws/<username>`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use domain::UserCommand;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{listing_limit_for, parse_body, user_lookup_then, SimulatorState};
use crate::error::ApiError;
use crate::request_context::RequestContext;

pub(super) async fn list(
    State(state): State<SimulatorState>,
    Path(username): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let limit = listing_limit_for(&state, &username, &query).await?;
    let follows = state.reads.followees(&username, limit).await?;
    Ok(Json(json!({ "follows": follows })))
}

#[derive(Deserialize)]
struct FollowChange {
    follow: Option<String>,
    unfollow: Option<String>,
}

pub(super) async fn change(
    State(state): State<SimulatorState>,
    Path(username): Path<String>,
    context: RequestContext,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let parsed = parse_body::<FollowChange>(&body).and_then(|change| {
        // `follow` wins when both are present.
        match (change.follow, change.unfollow) {
            (Some(followee), _) => Ok(UserCommand::Follow {
                followee,
                followed_at: context.received_at,
            }),
            (None, Some(followee)) => Ok(UserCommand::Unfollow {
                followee,
                unfollowed_at: context.received_at,
            }),
            (None, None) => Err(ApiError::BadRequest(
                "The body must name a user to follow or unfollow".to_owned(),
            )),
        }
    });
    let command = match parsed {
        Ok(command) => command,
        Err(bad_body) => return Err(user_lookup_then(&state, &username, bad_body).await),
    };
    state.commands.user(&username, command, &context).await?;
    Ok(StatusCode::NO_CONTENT)
}
