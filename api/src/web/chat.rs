//! Private messages for signed-in browsers, as JSON: the inbox, a conversation's pages,
//! sending, and marking read. (Blocking is an action on a user's page, in
//! [`super::actions`].)
//!
//! Every route acts as the session's user and names only the other party: a conversation is
//! found from the two names, so nobody can read or write a conversation they are not in.
//! Errors are the API's JSON errors ([`ApiError`]), with 401 for a missing session.
//!
//! | route | does |
//! |---|---|
//! | `GET /chat/inbox` | `{"unread": n, "conversations": [{partner, unread, last}]}`, newest first |
//! | `GET /chat/with/{partner}?before=N` | `{"messages": [...], "older": N?}`, newest first; `older` pages on |
//! | `POST /chat/with/{partner}` | sends `{"content": "..."}`; 204 once the views hold it |
//! | `POST /chat/with/{partner}/read` | marks `{"up_to": N}` read; 204 |
//! | `GET /chat/live` | server-sent events: `message` (a message to or from me, as JSON) and `read` (`{partner, up_to}`, my own read marks) |
//!
//! The live stream starts with a `connected` comment, sent once it is subscribed: a script
//! that (re)loads what it shows after that misses nothing, and drops what it gets twice by
//! message number. Updates arrive once the views hold them, on whichever replica the browser
//! is connected to.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::Event;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use commands::CommandContext;
use domain::ConversationCommand;
use projections::{ChatUpdate, InboxEntry, PrivateMessage};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::live::{event_stream, ConnectedGauge};
use super::session::{BrowserSession, SessionEnd, COOKIE_NAME};
use super::WebState;
use crate::error::{ApiError, ErrorBody};
use crate::openapi::answers::{DatabaseFailures, NotSignedIn, WriteConflict};
use crate::openapi::{self, Document};
use crate::request_context::RequestContext;
use crate::simulator::parse_body;

/// A private message as the chat's script sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageJson {
    pub number: i64,
    pub sender: String,
    pub recipient: String,
    /// Empty where `removed`.
    pub content: String,
    /// RFC 3339, UTC.
    pub sent_at: String,
    /// The sender deleted their account, and their text with it.
    pub removed: bool,
}

impl From<PrivateMessage> for MessageJson {
    fn from(message: PrivateMessage) -> Self {
        Self {
            number: message.number,
            sender: message.sender,
            recipient: message.recipient,
            content: message.content,
            sent_at: message
                .sent_at
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            removed: message.removed,
        }
    }
}

/// The signed-in user's conversations.
#[derive(Serialize, ToSchema)]
pub(super) struct InboxJson {
    /// Unread messages over every conversation.
    unread: i64,
    conversations: Vec<InboxItem>,
}

/// One conversation, as the inbox lists it.
#[derive(Serialize, ToSchema)]
struct InboxItem {
    partner: String,
    unread: i64,
    last: MessageJson,
}

impl From<InboxEntry> for InboxItem {
    fn from(entry: InboxEntry) -> Self {
        Self {
            partner: entry.partner,
            unread: entry.unread,
            last: entry.last.into(),
        }
    }
}

/// A page of a conversation, newest message first.
#[derive(Serialize, ToSchema)]
pub(super) struct ConversationJson {
    messages: Vec<MessageJson>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    older: Option<i64>,
}

fn signed_in(session: &BrowserSession) -> Result<&str, ApiError> {
    session.username().ok_or(ApiError::NotSignedIn)
}

/// `GET /chat/inbox`.
#[utoipa::path(
    get,
    path = "/chat/inbox",
    operation_id = "inbox",
    tag = "chat",
    security(("browser_session" = [])),
    responses(
        (status = 200, description = "The signed-in user's conversations, newest first", body = InboxJson),
        NotSignedIn,
        DatabaseFailures,
    ),
)]
pub(super) async fn inbox(
    State(state): State<WebState>,
    session: BrowserSession,
) -> Result<Json<InboxJson>, ApiError> {
    let me = signed_in(&session)?;
    let conversations = state.reads.inbox(me).await?;
    Ok(Json(InboxJson {
        // Over every conversation, not only the listed ones: the navigation's count.
        unread: state.reads.unread_total(me).await?,
        conversations: conversations.into_iter().map(InboxItem::from).collect(),
    }))
}

/// `GET /chat/with/{partner}`.
#[utoipa::path(
    get,
    path = "/chat/with/{partner}",
    operation_id = "conversation",
    tag = "chat",
    params(
        ("partner" = String, Path, description = "The other party's username"),
        ("before" = Option<i64>, Query, description = "Only messages numbered below this (the previous page's `older`)"),
    ),
    security(("browser_session" = [])),
    responses(
        (status = 200, description = "Up to 50 messages between the signed-in user and `partner`, newest first (none if they never talked)", body = ConversationJson),
        (status = 400, description = "`before` is not a number", body = ErrorBody),
        NotSignedIn,
        DatabaseFailures,
    ),
)]
pub(super) async fn conversation(
    State(state): State<WebState>,
    session: BrowserSession,
    Path(partner): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<ConversationJson>, ApiError> {
    let me = signed_in(&session)?;
    let before =
        match query.get("before") {
            Some(number) => Some(number.parse::<i64>().map_err(|_| {
                ApiError::BadRequest("`before` must be a message number".to_owned())
            })?),
            None => None,
        };
    let page = state.reads.conversation_page(me, &partner, before).await?;
    Ok(Json(ConversationJson {
        messages: page.messages.into_iter().map(MessageJson::from).collect(),
        older: page.older,
    }))
}

/// A message to send.
#[derive(Deserialize, ToSchema)]
struct Outgoing {
    content: String,
}

/// `POST /chat/with/{partner}`.
#[utoipa::path(
    post,
    path = "/chat/with/{partner}",
    operation_id = "sendPrivateMessage",
    tag = "chat",
    params(
        ("partner" = String, Path, description = "The other party's username"),
    ),
    request_body(content = Outgoing, content_type = "application/json"),
    security(("browser_session" = [])),
    responses(
        (status = 204, description = "Sent; a read from now on includes it, and both parties' live streams carry it"),
        (status = 400, description = "Not `{\"content\": string}`, or the content is empty, holds a NUL character or is over 1000 characters, or `partner` is the sender", body = ErrorBody),
        NotSignedIn,
        (status = 403, description = "The policy does not let these two talk, or `partner` blocks the sender (told alike), or the sender blocks `partner` (told so: a block cuts both ways)", body = ErrorBody),
        (status = 404, description = "No user has this name", body = ErrorBody),
        WriteConflict,
        DatabaseFailures,
    ),
)]
pub(super) async fn send(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    execute_as_me(
        &state,
        &session,
        &context,
        &partner,
        &body,
        |me, Outgoing { content }| ConversationCommand::Send {
            sender: me,
            recipient: partner.clone(),
            content,
            sent_at: context.received_at,
        },
    )
    .await
}

/// How far the signed-in user has read.
#[derive(Deserialize, ToSchema)]
struct ReadMark {
    up_to: u64,
}

/// `POST /chat/with/{partner}/read`.
#[utoipa::path(
    post,
    path = "/chat/with/{partner}/read",
    operation_id = "markConversationRead",
    tag = "chat",
    params(
        ("partner" = String, Path, description = "The other party's username"),
    ),
    request_body(content = ReadMark, content_type = "application/json"),
    security(("browser_session" = [])),
    responses(
        (status = 204, description = "Read up to there (a mark behind the current one changes nothing)"),
        (status = 400, description = "Not `{\"up_to\": integer}`, or beyond the last message", body = ErrorBody),
        NotSignedIn,
        (status = 404, description = "The signed-in user has no conversation with `partner`", body = ErrorBody),
        WriteConflict,
        DatabaseFailures,
    ),
)]
pub(super) async fn mark_read(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    Path(partner): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    execute_as_me(
        &state,
        &session,
        &context,
        &partner,
        &body,
        |me, ReadMark { up_to }| ConversationCommand::MarkRead {
            reader: me,
            up_to,
            read_at: context.received_at,
        },
    )
    .await
}

/// Executes, as the signed-in user, the command `command_of` makes of the JSON `body`, in
/// the conversation with `partner`: 204 once the views hold it.
async fn execute_as_me<Body: DeserializeOwned>(
    state: &WebState,
    session: &BrowserSession,
    context: &CommandContext,
    partner: &str,
    body: &[u8],
    command_of: impl FnOnce(String, Body) -> ConversationCommand,
) -> Result<StatusCode, ApiError> {
    let me = signed_in(session)?.to_owned();
    let command = command_of(me, parse_body(body)?);
    state
        .commands
        .conversation(partner, command, context)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Events buffered per connection before the sender waits for the client.
const CONNECTION_BUFFER: usize = 64;

/// `GET /chat/live`: the signed-in user's chat updates, as server-sent events.
#[utoipa::path(
    get,
    path = "/chat/live",
    operation_id = "chatLive",
    tag = "chat",
    security(("browser_session" = [])),
    responses(
        (status = 200, description = "A stream of server-sent events: `message` (a `MessageJson` to or from the signed-in user) and `read` (`{\"partner\", \"up_to\"}`, the user's own read marks), from the moment it opens", content_type = "text/event-stream", body = String),
        NotSignedIn,
    ),
)]
pub(super) async fn live(
    State(state): State<WebState>,
    session: BrowserSession,
) -> Result<Response, ApiError> {
    let me = signed_in(&session)?.to_owned();
    let mut updates = state.chat.subscribe();
    let mut session_end = SessionEnd::of(&session, &state.sessions_ended);
    let (events, receiver) = mpsc::channel(CONNECTION_BUFFER);
    let stopping = state.stopping.clone();
    tokio::spawn(async move {
        let _connected = ConnectedGauge::new("minitwit_chat_streams");
        if events
            .send(Event::default().comment("connected"))
            .await
            .is_err()
        {
            return;
        }
        loop {
            let update = tokio::select! {
                () = stopping.cancelled() => return,
                () = events.closed() => return,
                // Signed out (here or on another replica): nothing more for this browser.
                () = session_end.ended() => return,
                update = updates.recv() => update,
            };
            let event = match update {
                Ok(update) if update.concerns(&me) => chat_event(&update),
                Ok(_) => continue,
                // Too far behind to know what was missed: end the stream; the browser
                // reconnects and its script reloads what it shows.
                Err(RecvError::Lagged(_) | RecvError::Closed) => return,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    });
    Ok(event_stream(receiver))
}

/// The event of `update`; for a message, also how long it took to get here.
fn chat_event(update: &ChatUpdate) -> Event {
    match update {
        ChatUpdate::Sent(message) => {
            let waited = chrono::Utc::now() - message.sent_at;
            metrics::histogram!("minitwit_chat_delivery_seconds")
                .record(waited.as_seconds_f64().max(0.0));
            let data = serde_json::to_string(&MessageJson::from(message.clone()))
                .expect("a message serialises");
            Event::default().event("message").data(data)
        }
        ChatUpdate::Read { partner, up_to, .. } => Event::default()
            .event("read")
            .data(json!({"partner": partner, "up_to": up_to}).to_string()),
    }
}

/// The security scheme of the chat's routes: the browser's session cookie.
const BROWSER_SESSION: &str = "browser_session";

/// The chat's JSON routes on the web listener: `routes` plus `GET /chat/openapi.json`, a
/// document of their own — they are the browser's, signed in by the session cookie, not the
/// simulator's, and live on the other listener.
pub fn described(routes: OpenApiRouter<WebState>) -> Router<WebState> {
    let frame = openapi::frame(
        "MiniTwit chat (browser JSON)",
        "Private messages as the chat pages' script uses them, on the web listener. Every \
         route acts as the signed-in user of the session cookie (401 without one) and names \
         only the other party, so no route reaches a conversation its user is not in. Errors \
         have the simulator API's shape.",
        BROWSER_SESSION,
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            COOKIE_NAME,
            "The session cookie that signing in through the pages sets",
        ))),
    );
    openapi::described(frame, routes.routes(routes!(chat_openapi_json)))
}

/// The OpenAPI description of the chat's JSON routes.
#[utoipa::path(
    get,
    path = "/chat/openapi.json",
    operation_id = "chatOpenapi",
    tag = "documentation",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)),
)]
async fn chat_openapi_json(document: Extension<Document>) -> impl IntoResponse {
    openapi::document_answer(document)
}
