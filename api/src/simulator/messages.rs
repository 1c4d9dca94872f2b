//! `GET /msgs`, `GET /msgs/<username>` and `POST /msgs/<username>`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use projections::{TimelineEntry, TimelineScope, TimelineWindow};
use serde::{Deserialize, Serialize};

use super::{
    latest, listing_limit, listing_limit_for, parse_body, user_lookup_then, SimulatorState,
};
use crate::commands::CommandError;
use crate::error::ApiError;
use crate::request_context::RequestContext;

/// A message as the simulator sees it.
#[derive(Serialize)]
pub(super) struct MessageView {
    content: String,
    pub_date: i64,
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

pub(super) async fn list_by_author(
    State(state): State<SimulatorState>,
    Path(username): Path<String>,
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

#[derive(Deserialize)]
struct NewMessage {
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

pub(super) async fn post(
    State(state): State<SimulatorState>,
    Path(username): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    context: RequestContext,
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
