//! The three timeline pages — `/`, `/public` and `/{username}` — with keyset paging
//! ([`super::paging`]).
//!
//! Asked for with `Accept: text/event-stream` (as `EventSource` does), the same URLs stream
//! the page's live updates instead (see [`super::live`]).

use axum::extract::{Path, Query, State};
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use projections::{TimelineCursor, TimelineEntry, TimelineScope};

use super::assets::ASSET_URLS;
use super::error::WebError;
use super::live;
use super::pages::{
    conversation_href, redirect, render, user_href, ChatOffer, ChatStatus, Chrome, FollowStatus,
    MessageView, TimelinePage, Title, Visitor,
};
use super::paging::{PageQuery, Paged};
use super::session::BrowserSession;
use super::WebState;

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
        return live::stream(&state, &session, scope, &page, &headers).await;
    }
    let frame = PageFrame {
        path: "/".to_owned(),
        title: Title::MINE,
        follow: None,
        chat: None,
        twitbox: Some(username.clone()),
        deleted: false,
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
        return live::stream(&state, &session, TimelineScope::Public, &page, &headers).await;
    }
    let frame = PageFrame {
        path: "/public".to_owned(),
        title: Title::PUBLIC,
        follow: None,
        chat: None,
        twitbox: None,
        deleted: false,
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
    let me = session.username();
    let Some(relation) = state.reads.profile_seen_by(&profile, me).await? else {
        if wants_stream(&headers) {
            return Ok(live::nothing_to_stream());
        }
        return Err(WebError::unknown_user());
    };
    let scope = TimelineScope::Author(&profile);
    if wants_stream(&headers) {
        return live::stream(&state, &session, scope, &page, &headers).await;
    }
    // A forgotten user's page says so, and offers nothing to do with them.
    let me = me.filter(|_| !relation.forgotten);
    let follow = me.map(|me| match (me == profile, relation.following) {
        (true, _) => FollowStatus::Yourself,
        (false, true) => FollowStatus::Following,
        (false, false) => FollowStatus::NotFollowing,
    });
    let chat = me.filter(|me| *me != profile).map(|_| ChatStatus {
        conversation_href: conversation_href(&profile),
        offer: ChatOffer::of(&relation, state.commands.chat_policy()),
    });
    let frame = PageFrame {
        path: user_href(&profile),
        title: Title::user_timeline(&profile),
        follow,
        chat,
        twitbox: None,
        deleted: relation.forgotten,
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
    /// The owner was forgotten (see [`TimelinePage::deleted`]).
    deleted: bool,
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
        deleted,
    } = frame;
    let page = TimelinePage {
        chrome: chrome(state, session).await?,
        title,
        follow,
        chat,
        twitbox,
        deleted,
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
