//! The three timeline pages — `/`, `/public` and `/{username}` — with keyset paging.
//!
//! A page shows 30 messages. "older" links `?before=<cursor of its last message>` and
//! "newer" links `?after=<cursor of its first>`, so paging stays put while people post.
//! Asked for with `Accept: text/event-stream` (as `EventSource` does), the same URLs stream
//! the page's live updates instead (see [`super::live`]).

use axum::extract::{Path, Query, State};
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use projections::{TimelineCursor, TimelineEntry, TimelineScope, TimelineWindow};
use serde::Deserialize;

use super::assets::ASSET_URLS;
use super::error::WebError;
use super::live;
use super::pages::{
    conversation_href, redirect, render, user_href, ChatStatus, Chrome, FollowStatus, MessageView,
    TimelinePage, Title, Visitor,
};
use super::session::BrowserSession;
use super::WebState;

/// Messages per page, as the original.
pub const PAGE_SIZE: i64 = 30;

/// Which page of a timeline: `?before=` (older) or `?after=` (newer) a cursor.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    before: Option<String>,
    after: Option<String>,
}

impl PageQuery {
    fn window(&self) -> Result<TimelineWindow, WebError> {
        let parse = |text: &str| {
            text.parse::<TimelineCursor>()
                .map_err(|err| WebError::BadRequest(format!("Unreadable page link: {err}.")))
        };
        Ok(match (&self.before, &self.after) {
            (Some(before), _) => TimelineWindow::OlderThan(parse(before)?),
            (None, Some(after)) => TimelineWindow::NewerThan(parse(after)?),
            (None, None) => TimelineWindow::Newest,
        })
    }

    /// The cursor after which a live stream should start (see [`super::live`]).
    pub fn after(&self) -> Result<Option<TimelineCursor>, WebError> {
        match self.window()? {
            TimelineWindow::NewerThan(cursor) => Ok(Some(cursor)),
            _ => Ok(None),
        }
    }
}

/// Whether the client asked for the live stream rather than the page.
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

/// `GET /`: my timeline, or the public one for visitors who have not signed in.
pub async fn mine(
    State(state): State<WebState>,
    session: BrowserSession,
    Query(page): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    let Some(username) = session.username().map(str::to_owned) else {
        if wants_stream(&headers) {
            return Ok(live::nothing_to_stream());
        }
        return Ok(redirect("/public"));
    };
    let scope = TimelineScope::Personal(&username);
    if wants_stream(&headers) {
        return live::stream(&state, scope, &page, &headers).await;
    }
    let frame = PageFrame {
        path: "/".to_owned(),
        title: Title::MINE,
        follow: None,
        chat: None,
        twitbox: Some(username.clone()),
    };
    timeline_page(&state, &session, scope, &page, frame).await
}

/// `GET /public`.
pub async fn public(
    State(state): State<WebState>,
    session: BrowserSession,
    Query(page): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if wants_stream(&headers) {
        return live::stream(&state, TimelineScope::Public, &page, &headers).await;
    }
    let frame = PageFrame {
        path: "/public".to_owned(),
        title: Title::PUBLIC,
        follow: None,
        chat: None,
        twitbox: None,
    };
    timeline_page(&state, &session, TimelineScope::Public, &page, frame).await
}

/// `GET /{username}`.
pub async fn user(
    State(state): State<WebState>,
    session: BrowserSession,
    Path(profile): Path<String>,
    Query(page): Query<PageQuery>,
    headers: HeaderMap,
) -> Result<Response, WebError> {
    if !state.reads.user_exists(&profile).await? {
        if wants_stream(&headers) {
            return Ok(live::nothing_to_stream());
        }
        return Err(WebError::unknown_user());
    }
    let scope = TimelineScope::Author(&profile);
    if wants_stream(&headers) {
        return live::stream(&state, scope, &page, &headers).await;
    }
    let follow = match session.username() {
        None => None,
        Some(me) if me == profile => Some(FollowStatus::Yourself),
        Some(me) if state.reads.is_following(me, &profile).await? => Some(FollowStatus::Following),
        Some(_) => Some(FollowStatus::NotFollowing),
    };
    let chat = match session.username() {
        Some(me) if me != profile => Some(ChatStatus {
            conversation_href: conversation_href(&profile),
            blocked: state.reads.blocks(me, &profile).await?,
        }),
        _ => None,
    };
    let frame = PageFrame {
        path: user_href(&profile),
        title: Title::user_timeline(&profile),
        follow,
        chat,
        twitbox: None,
    };
    timeline_page(&state, &session, scope, &page, frame).await
}

/// What a timeline page shows around its messages.
struct PageFrame {
    /// The page's own path, which its paging links extend.
    path: String,
    title: Title,
    follow: Option<FollowStatus>,
    chat: Option<ChatStatus>,
    twitbox: Option<String>,
}

/// One page of a timeline: the messages `page` asks for, within `frame`.
async fn timeline_page(
    state: &WebState,
    session: &BrowserSession,
    scope: TimelineScope<'_>,
    page: &PageQuery,
    frame: PageFrame,
) -> Result<Response, WebError> {
    let Paged {
        entries,
        newer,
        older,
        newest_page,
    } = Paged::load(state, scope, page.window()?).await?;
    // On the newest page, live updates continue from its newest message (or from the very
    // start, when there is none yet).
    let live_after = newest_page.then(|| {
        entries
            .first()
            .map_or(TimelineCursor::BEFORE_ALL, TimelineEntry::cursor)
            .to_string()
    });
    let PageFrame {
        path,
        title,
        follow,
        chat,
        twitbox,
    } = frame;
    let page = TimelinePage {
        chrome: chrome(state, session).await?,
        title,
        follow,
        chat,
        twitbox,
        messages: entries
            .into_iter()
            .map(|entry| MessageView::new(entry, state.avatars))
            .collect(),
        live_after,
        newer_href: newer.map(|cursor| format!("{path}?after={cursor}")),
        older_href: older.map(|cursor| format!("{path}?before={cursor}")),
        profile_href: path,
    };
    Ok(render(StatusCode::OK, &page))
}

/// One page of entries, and where the neighbouring pages start.
struct Paged {
    entries: Vec<TimelineEntry>,
    /// Set when there are newer entries: the cursor the "newer" link starts after.
    newer: Option<TimelineCursor>,
    /// Set when there are older entries: the cursor the "older" link starts before.
    older: Option<TimelineCursor>,
    /// Whether this is the newest page (the one that updates live).
    newest_page: bool,
}

impl Paged {
    /// Reads the page of `scope` in `window`, plus one entry telling whether there is more
    /// beyond it.
    async fn load(
        state: &WebState,
        scope: TimelineScope<'_>,
        window: TimelineWindow,
    ) -> Result<Self, WebError> {
        let mut entries = state.reads.timeline(scope, window, PAGE_SIZE + 1).await?;
        let full = entries.len() > PAGE_SIZE as usize;
        let (newer, newest_page) = match window {
            TimelineWindow::Newest => {
                entries.truncate(PAGE_SIZE as usize);
                (None, true)
            }
            TimelineWindow::OlderThan(cursor) => {
                entries.truncate(PAGE_SIZE as usize);
                // Something newer exists: at least the entry the cursor came from.
                (
                    Some(entries.first().map_or(cursor, TimelineEntry::cursor)),
                    false,
                )
            }
            TimelineWindow::NewerThan(_) if !full => {
                // Less than a page above the cursor: that is the newest page, shown whole.
                return Box::pin(Self::load(state, scope, TimelineWindow::Newest)).await;
            }
            TimelineWindow::NewerThan(_) => {
                // The entries nearest the cursor make the page; the newest one read lies
                // beyond it, on a newer page still.
                entries.remove(0);
                (entries.first().map(TimelineEntry::cursor), false)
            }
        };
        let older = match window {
            TimelineWindow::NewerThan(_) => last_cursor(&entries),
            _ if full => last_cursor(&entries),
            _ => None,
        };
        Ok(Self {
            entries,
            newer,
            older,
            newest_page,
        })
    }
}

fn last_cursor(entries: &[TimelineEntry]) -> Option<TimelineCursor> {
    entries.last().map(TimelineEntry::cursor)
}

/// The frame of a page for this visitor, taking the flashes waiting for it.
pub async fn chrome(state: &WebState, session: &BrowserSession) -> Result<Chrome, WebError> {
    let (visitor, unread) = match session.username() {
        Some(username) => (
            Visitor::SignedIn(username.to_owned()),
            state.reads.unread_total(username).await?,
        ),
        None => (Visitor::Anonymous, 0),
    };
    Ok(Chrome {
        visitor,
        unread,
        flashes: session.take_flashes().await?,
        assets: &ASSET_URLS,
    })
}
