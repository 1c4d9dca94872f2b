//! Live timelines: server-sent events carrying new messages to open pages.
//!
//! A timeline page's own URL, asked for with `Accept: text/event-stream`, streams what the
//! [`LiveFeed`](projections::LiveFeed) announces for that timeline: each newly projected
//! message as the same `<li>` the page renders (`posted`, with the message's cursor as the
//! event id) and each flagged message's id (`hidden`). The page's script (`static/live.js`)
//! inserts and removes them; without JavaScript the page is simply a page.
//!
//! Nothing falls between the page and its stream: the page passes its newest cursor
//! (`?after=`), and the stream first subscribes, then sends what the views hold beyond that
//! cursor, then what the feed announces. After a dropped connection the browser reconnects
//! with `Last-Event-ID`, and the stream resumes after it the same way. A stream opened by a
//! signed-in session ends when that session does (see [`SessionEnd`]). Through a reverse
//! proxy it works as long as responses are not buffered, which `X-Accel-Buffering: no` asks
//! of nginx; a comment every 15 s keeps idle connections from being timed out.

use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;

use axum::http::header::{HeaderName, HeaderValue};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use projections::{LiveUpdate, TimelineCursor, TimelineEntry, TimelineScope, TimelineWindow};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;

use super::error::WebError;
use super::pages::{MessageItem, MessageView};
use super::paging::PageQuery;
use super::session::{BrowserSession, SessionEnd};
use super::WebState;

/// At most this many missed messages are sent on (re)connecting; a page that missed more is
/// better reloaded, and a reload shows them anyway.
const CATCH_UP_LIMIT: i64 = 100;
/// How long the browser waits before reconnecting a dropped stream.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// Events buffered per connection before the sender waits for the client.
const CONNECTION_BUFFER: usize = 64;

/// The answer that tells `EventSource` to stop (re)connecting: there is nothing to stream
/// (no such user, or nobody signed in for "my" timeline).
pub fn nothing_to_stream() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Whose messages a stream passes on.
enum Audience {
    Everyone,
    Authors(HashSet<String>),
}

impl Audience {
    async fn of(state: &WebState, scope: TimelineScope<'_>) -> Result<Self, WebError> {
        Ok(match scope {
            TimelineScope::Public => Self::Everyone,
            TimelineScope::Author(author) => Self::Authors(HashSet::from([author.to_owned()])),
            // The follow set as the stream opens: following someone new navigates to a new
            // page, and so opens a new stream.
            TimelineScope::Personal(user) => {
                let mut authors: HashSet<String> = state
                    .reads
                    .followees(user, i64::MAX)
                    .await?
                    .into_iter()
                    .collect();
                authors.insert(user.to_owned());
                Self::Authors(authors)
            }
        })
    }

    fn includes(&self, author: &str) -> bool {
        match self {
            Self::Everyone => true,
            Self::Authors(authors) => authors.contains(author),
        }
    }
}

/// The live stream of the timeline `scope`, from where the page (or the last event the
/// browser received) left off.
pub async fn stream(
    state: &WebState,
    session: &BrowserSession,
    scope: TimelineScope<'_>,
    page: &PageQuery,
    headers: &HeaderMap,
) -> Result<Response, WebError> {
    let resume_from = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|id| id.parse::<TimelineCursor>().ok());
    let after = resume_from.or(page.after()?);
    let audience = Audience::of(state, scope).await?;
    // Subscribed before reading what was missed, so nothing falls in between; what arrives
    // both ways is sent once.
    let mut updates = state.live.subscribe();
    let mut session_end = SessionEnd::of(session, &state.sessions_ended);
    let missed = match after {
        Some(cursor) => {
            state
                .reads
                .timeline(scope, TimelineWindow::NewerThan(cursor), CATCH_UP_LIMIT)
                .await?
        }
        None => Vec::new(),
    };

    let (events, receiver) = mpsc::channel(CONNECTION_BUFFER);
    let stopping = state.stopping.clone();
    let avatars = state.avatars;
    tokio::spawn(async move {
        let _connected = ConnectedGauge::new("minitwit_live_streams");
        if events
            .send(Event::default().retry(RECONNECT_AFTER).comment("connected"))
            .await
            .is_err()
        {
            return;
        }
        let already_sent: HashSet<String> = missed
            .iter()
            .map(|entry| entry.message_id.clone())
            .collect();
        // Oldest first: each is put on top of the list.
        for entry in missed.into_iter().rev() {
            if events.send(posted(entry, avatars)).await.is_err() {
                return;
            }
        }
        loop {
            let update = tokio::select! {
                () = stopping.cancelled() => return,
                () = events.closed() => return,
                () = session_end.ended() => return,
                update = updates.recv() => update,
            };
            let event = match update {
                Ok(update) => match &*update {
                    LiveUpdate::Posted(entry)
                        if audience.includes(&entry.author)
                            && !already_sent.contains(&entry.message_id) =>
                    {
                        posted(entry.clone(), avatars)
                    }
                    LiveUpdate::Posted(_) => continue,
                    LiveUpdate::Hidden { message_id } => {
                        Event::default().event("hidden").data(message_id)
                    }
                },
                // Too far behind to know what was missed: end the stream, and the browser
                // reconnects from its last event, catching up from the views.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return,
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    });

    Ok(event_stream(receiver))
}

/// The response streaming what `events` receives, with a comment every 15 s so idle
/// connections are not timed out, and unbuffered through nginx (`X-Accel-Buffering`).
pub(super) fn event_stream(events: mpsc::Receiver<Event>) -> Response {
    let body = ReceiverStream::new(events).map(Ok::<_, Infallible>);
    let mut response = Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response.headers_mut().insert(
        HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    response
}

/// The `posted` event of `entry`: its list item, identified by its cursor.
fn posted(entry: TimelineEntry, avatars: crate::config::AvatarSource) -> Event {
    let cursor = entry.cursor().to_string();
    let view = MessageView::new(entry, avatars);
    let html = askama::Template::render(&MessageItem { message: &view }).unwrap_or_else(|err| {
        tracing::error!(error = %err, "rendering a live message failed");
        String::new()
    });
    Event::default().event("posted").id(cursor).data(html)
}

/// Counts open streams in the gauge `name` while alive.
pub(super) struct ConnectedGauge(&'static str);

impl ConnectedGauge {
    pub(super) fn new(name: &'static str) -> Self {
        metrics::gauge!(name).increment(1.0);
        Self(name)
    }
}

impl Drop for ConnectedGauge {
    fn drop(&mut self) {
        metrics::gauge!(self.0).decrement(1.0);
    }
}
