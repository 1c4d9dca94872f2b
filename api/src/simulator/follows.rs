//! `GET /fllws/<username>` and `POST /fllws/<username>`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use domain::UserCommand;
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::extract::{Path, Query};
use super::{
    listing_limit_for, parse_body, user_lookup_then, Listing, SimulatorState, Tracked, UserPath,
};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::answers::{DatabaseFailures, NotAuthorized, WriteConflict};
use crate::request_context::RequestContext;

/// Whom a user follows.
#[derive(Serialize, ToSchema)]
pub(super) struct Followees {
    /// Their usernames, oldest follow first.
    follows: Vec<String>,
}

/// Whom `username` follows, oldest follow first.
#[utoipa::path(
    get,
    path = "/fllws/{username}",
    operation_id = "listFollows",
    tag = "simulator",
    params(UserPath, Tracked, Listing),
    security(("simulator_credentials" = [])),
    responses(
        (status = 200, description = "At most `no` usernames (maybe none)", body = Followees),
        (status = 400, description = "The username does not decode to UTF-8", body = ErrorBody),
        NotAuthorized,
        (status = 404, description = "No user has this name", body = ErrorBody),
        DatabaseFailures,
    ),
)]
pub(super) async fn list(
    State(state): State<SimulatorState>,
    Path(UserPath { username }): Path<UserPath>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Followees>, ApiError> {
    let limit = listing_limit_for(&state, &username, &query).await?;
    let follows = state.reads.followees(&username, limit).await?;
    Ok(Json(Followees { follows }))
}

/// A follow or an unfollow; `follow` wins when both are given, and one of them must be.
#[derive(Deserialize)]
struct FollowChange {
    /// The username to follow (following again changes nothing).
    follow: Option<String>,
    /// The username to stop following (not following them is no error).
    unfollow: Option<String>,
}

/// The schema says exactly which bodies are a follow change: `follow` naming a user (with
/// `unfollow` a name or null, and ignored), or `unfollow` naming a user (with `follow` absent
/// or null). `{}`, or both null, is not one, and is refused.
impl PartialSchema for FollowChange {
    fn schema() -> RefOr<Schema> {
        let name = |description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some(description))
        };
        let name_or_null = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(description))
        };
        let nothing = ObjectBuilder::new()
            .schema_type(Type::Null)
            .description(Some("Absent or null when unfollowing"));
        AnyOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .property(
                        "follow",
                        name("The username to follow (following again changes nothing)"),
                    )
                    .required("follow")
                    .property("unfollow", name_or_null("Ignored when `follow` is given")),
            )
            .item(
                ObjectBuilder::new()
                    .property("follow", nothing)
                    .property(
                        "unfollow",
                        name("The username to stop following (not following them is no error)"),
                    )
                    .required("unfollow"),
            )
            .description(Some(
                "A follow or an unfollow: `follow` wins when both are given, and one of them \
                 must name a user",
            ))
            .into()
    }
}

impl ToSchema for FollowChange {}

/// Makes `username` follow or unfollow another user.
#[utoipa::path(
    post,
    path = "/fllws/{username}",
    operation_id = "changeFollow",
    tag = "simulator",
    params(UserPath, Tracked),
    request_body(content = FollowChange, content_type = "application/json"),
    security(("simulator_credentials" = [])),
    responses(
        (status = 204, description = "Done; a read from now on reflects it"),
        (status = 400, description = "The body is not JSON naming a user to `follow` or `unfollow`, or the username does not decode to UTF-8", body = ErrorBody),
        NotAuthorized,
        (status = 404, description = "No user has this name, or none has the target's", body = ErrorBody),
        WriteConflict,
        DatabaseFailures,
    ),
)]
pub(super) async fn change(
    State(state): State<SimulatorState>,
    Path(UserPath { username }): Path<UserPath>,
    RequestContext(context): RequestContext,
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
