//! The chat's pages: `/messages` (the inbox) and `/messages/{partner}` (a conversation, with
//! the box to write in), plus that box's plain form post for browsers without scripts.
//!
//! The pages render what the views hold; `static/chat.js` then keeps them live through the
//! chat's JSON routes ([`super::chat`]). Opening a conversation's newest page marks it read.
//! Only the newest page has the box, and only when its user may write to the other
//! ([`ChatOffer`]); older pages lead down to it. Nobody has a conversation with themselves:
//! that address leads to the inbox.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use domain::{ConversationCommand, ConversationError};
use projections::LaterPage;
use serde::Deserialize;

use super::error::WebError;
use super::form::FormData;
use super::pages::{
    conversation_href, redirect, render, user_href, ChatMessageView, ChatOffer, ConversationPage,
    InboxItemView, InboxPage, Title,
};
use super::session::BrowserSession;
use super::timelines::chrome;
use super::WebState;
use crate::request_context::RequestContext;

/// `GET /messages`.
pub(super) async fn inbox(
    State(state): State<WebState>,
    session: BrowserSession,
) -> Result<Response, WebError> {
    let me = session.require_user()?;
    let conversations = state
        .reads
        .inbox(me)
        .await?
        .into_iter()
        .map(|entry| InboxItemView::new(entry, me, state.avatars))
        .collect();
    let page = InboxPage {
        chrome: chrome(&state, &session).await?,
        title: Title::INBOX,
        conversations,
    };
    Ok(render(StatusCode::OK, &page))
}

/// `GET /messages/{partner}`, newest messages first or `?before=<number>`.
pub(super) async fn conversation(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    Path(partner): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, WebError> {
    let me = session.require_user()?.to_owned();
    if me == partner {
        session
            .flash(ConversationError::CannotMessageSelf.to_string())
            .await?;
        return Ok(redirect("/messages"));
    }
    // A forgotten partner's conversation stays readable to the other side, with their
    // messages removed and nowhere to write.
    let Some(relation) = state.reads.profile_seen_by(&partner, Some(&me)).await? else {
        return Err(WebError::unknown_user());
    };
    let before = match query.get("before") {
        Some(number) => Some(number.parse::<i64>().map_err(|_| {
            WebError::BadRequest("Unreadable page link: not a message number.".to_owned())
        })?),
        None => None,
    };
    let page = state.reads.conversation_page(&me, &partner, before).await?;
    let href = conversation_href(&partner);
    let older_href = page.older.map(|before| format!("{href}?before={before}"));
    let later_href = page.later.map(|later| match later {
        LaterPage::Before(before) => format!("{href}?before={before}"),
        LaterPage::Newest => href.clone(),
    });
    let mut messages = page.messages;
    if before.is_none() {
        if let Some(newest) = messages.first() {
            let command = ConversationCommand::MarkRead {
                reader: me.clone(),
                up_to: u64::try_from(newest.number).unwrap_or_default(),
                read_at: context.received_at,
            };
            state
                .commands
                .conversation(&partner, command, &context)
                .await?;
        }
    }
    // Read newest first; shown oldest first, as a conversation reads.
    messages.reverse();
    let page = ConversationPage {
        chrome: chrome(&state, &session).await?,
        title: Title::conversation(&partner),
        messages: messages
            .into_iter()
            .map(|message| ChatMessageView::new(message, &me))
            .collect(),
        me,
        partner_href: user_href(&partner),
        send_href: href,
        partner_deleted: relation.forgotten,
        offer: ChatOffer::of(&relation, state.commands.chat_policy()),
        partner,
        older_href,
        later_href,
    };
    Ok(render(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub(super) struct ChatForm {
    #[serde(default)]
    content: String,
}

/// `POST /messages/{partner}`: the box, sent as a plain form; back to the conversation.
pub(super) async fn send(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    Path(partner): Path<String>,
    FormData(form): FormData<ChatForm>,
) -> Result<Response, WebError> {
    let me = session.require_user()?;
    let command = ConversationCommand::Send {
        sender: me.to_owned(),
        recipient: partner.clone(),
        content: form.content,
        sent_at: context.received_at,
    };
    state
        .commands
        .conversation(&partner, command, &context)
        .await?;
    Ok(redirect(&conversation_href(&partner)))
}
