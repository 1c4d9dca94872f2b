//! `GET /msgs`, `GET /msgs/<username>` and `POST /msgs/<username>`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use commands::CommandError;
use projections::{TimelineEntry, TimelineScope, TimelineWindow};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Path, Query};
use super::{
    latest, listing_limit, listing_limit_for, parse_body, user_lookup_then, Listing,
    SimulatorState, Tracked, UserPath,
};
use crate::error::{ApiError, ErrorBody};
use crate::openapi::answers::{DatabaseFailures, NotAuthorized, WriteConflict};
use crate::request_context::RequestContext;

/// A message as the simulator sees it.
#[derive(Serialize, ToSchema)]
#[schema(as = Message)]
pub(super) struct MessageView {
    /// The text, raw (it may hold markup; nothing is escaped).
    content: String,
    /// When it was posted, in Unix seconds.
    pub_date: i64,
    /// Its author's username.
    user: String,
}

impl From<TimelineEntry> for MessageView {
    fn from(entry: TimelineEntry) -> Self {
        Self {
            content: entry.content,
            pub_date: entry.pub_date,
            user: entry.author,
        }
    }
}

fn views(entries: Vec<TimelineEntry>) -> Json<Vec<MessageView>> {
    Json(entries.into_iter().map(MessageView::from).collect())
}

/// The newest non-flagged messages of all users, newest first.
#[utoipa::path(
    get,
    path = "/msgs",
    operation_id = "listMessages",
    tag = "simulator",
    params(Tracked, Listing),
    security(("simulator_credentials" = [])),
    responses(
        (status = 200, description = "At most `no` messages, newest first", body = Vec<MessageView>),
        NotAuthorized,
        DatabaseFailures,
    ),
)]
pub(super) async fn list_all(
    State(state): State<SimulatorState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let limit = listing_limit(query.get("no").map(String::as_str), state.max_messages);
    let entries = state
        .reads
        .timeline(TimelineScope::Public, TimelineWindow::Newest, limit)
        .await?;
    Ok(views(entries))
}

/// One author's newest non-flagged messages, newest first.
#[utoipa::path(
    get,
    path = "/msgs/{username}",
    operation_id = "listMessagesOf",
    tag = "simulator",
    params(UserPath, Tracked, Listing),
    security(("simulator_credentials" = [])),
    responses(
        (status = 200, description = "At most `no` messages, newest first (maybe none)", body = Vec<MessageView>),
        (status = 400, description = "The username does not decode to UTF-8", body = ErrorBody),
        NotAuthorized,
        (status = 404, description = "No user has this name", body = ErrorBody),
        DatabaseFailures,
    ),
)]
pub(super) async fn list_by_author(
    State(state): State<SimulatorState>,
    Path(UserPath { username }): Path<UserPath>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<MessageView>>, ApiError> {
    let limit = listing_limit_for(&state, &username, &query).await?;
    let entries = state
        .reads
        .timeline(
            TimelineScope::Author(&username),
            TimelineWindow::Newest,
            limit,
        )
        .await?;
    Ok(views(entries))
}

/// A message to post.
#[derive(Deserialize, ToSchema)]
struct NewMessage {
    /// The text, stored raw: empty is allowed, a NUL character is not (PostgreSQL cannot
    /// store it), and at most 1,000 characters.
    #[schema(max_length = 1000, pattern = "^[^\\u0000]*$")]
    content: String,
}

impl NewMessage {
    /// The content, if within the length limit: a message too long is a bad body.
    fn checked_content(self) -> Result<String, ApiError> {
        domain::message::check_new_content(&self.content)
            .map_err(|refusal| CommandError::Rejected(refusal).into())
            .map(|()| self.content)
    }
}

/// Posts a message as `username`, at the time of the request.
#[utoipa::path(
    post,
    path = "/msgs/{username}",
    operation_id = "postMessage",
    tag = "simulator",
    params(UserPath, Tracked),
    request_body(content = NewMessage, content_type = "application/json"),
    security(("simulator_credentials" = [])),
    responses(
        (status = 204, description = "Posted; a read from now on includes it"),
        (status = 400, description = "The body is not `{\"content\": string}`, the content holds a NUL character or is over 1000 characters long, or the username does not decode to UTF-8", body = ErrorBody),
        NotAuthorized,
        (status = 404, description = "No user has this name", body = ErrorBody),
        WriteConflict,
        DatabaseFailures,
    ),
)]
pub(super) async fn post(
    State(state): State<SimulatorState>,
    Path(UserPath { username }): Path<UserPath>,
    Query(query): Query<HashMap<String, String>>,
    RequestContext(context): RequestContext,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let content = match parse_body(&body).and_then(NewMessage::checked_content) {
        Ok(content) => content,
        Err(bad_body) => return Err(user_lookup_then(&state, &username, bad_body).await),
    };
    // The simulator numbers its actions with `latest`: a retried request is the same action.
    // Only a real number names one (-1 and non-numbers mean "none", as for storing it).
    let action = latest::latest_to_store(query.get("latest")).map(|id| id.to_string());
    state
        .commands
        .post_message(username, content, action.as_deref(), &context)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
