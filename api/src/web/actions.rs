//! What signed-in users do from the pages: post a message, follow and unfollow, block and
//! unblock.
//!
//! Each is a command through the same bus as the simulator's API, so the browser and the API
//! produce the same events, and each answers only once the views include it: the page the
//! redirect lands on already shows the change. A block is asked for on a page of its own
//! first (`GET /{username}/block`), which says what it does: a form and a page, since the
//! pages run no inline script to ask with.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use commands::{CommandContext, CommandError};
use domain::{UserCommand, UserError};
use serde::Deserialize;

use super::error::WebError;
use super::form::FormData;
use super::pages::{redirect, render, user_href, BlockPage, Title};
use super::session::BrowserSession;
use super::timelines::chrome;
use super::WebState;
use crate::request_context::RequestContext;

#[derive(Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    text: String,
}

/// `POST /add_message`: records a non-empty message; an empty one records nothing.
pub async fn add_message(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    FormData(form): FormData<MessageForm>,
) -> Result<Response, WebError> {
    let author = session.require_user()?.to_owned();
    if !form.text.is_empty() {
        domain::message::check_new_content(&form.text).map_err(CommandError::Rejected)?;
        state
            .commands
            .post_message(author, form.text, None, &context)
            .await?;
        session.flash("Your message was recorded").await?;
    }
    Ok(redirect("/"))
}

/// `GET|POST /{username}/follow`.
pub async fn follow(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    Path(followee): Path<String>,
) -> Result<Response, WebError> {
    let command = UserCommand::Follow {
        followee: followee.clone(),
        followed_at: context.received_at,
    };
    let flash = format!("You are now following \"{followee}\"");
    change_relation(&state, &session, &context, &followee, command, flash).await
}

/// `GET|POST /{username}/unfollow`.
pub async fn unfollow(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    Path(followee): Path<String>,
) -> Result<Response, WebError> {
    let command = UserCommand::Unfollow {
        followee: followee.clone(),
        unfollowed_at: context.received_at,
    };
    let flash = format!("You are no longer following \"{followee}\"");
    change_relation(&state, &session, &context, &followee, command, flash).await
}

/// `GET /{username}/block`: what blocking them does, and the button that does it; their page
/// if the signed-in user blocks them already.
pub async fn confirm_block(
    State(state): State<WebState>,
    session: BrowserSession,
    Path(other): Path<String>,
) -> Result<Response, WebError> {
    let me = session.require_user()?;
    if me == other {
        return Err(UserError::CannotBlockSelf.into());
    }
    let profile_href = user_href(&other);
    match state.reads.profile_seen_by(&other, Some(me)).await? {
        Some(relation) if relation.blocked => Ok(redirect(&profile_href)),
        Some(relation) if !relation.forgotten => {
            let page = BlockPage {
                chrome: chrome(&state, &session).await?,
                title: Title::block(&other),
                username: other,
                profile_href,
            };
            Ok(render(StatusCode::OK, &page))
        }
        _ => Err(WebError::unknown_user()),
    }
}

/// `POST /{username}/block`: neither they nor the signed-in user can message the other.
pub async fn block(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    Path(other): Path<String>,
) -> Result<Response, WebError> {
    let command = UserCommand::Block {
        blocked: other.clone(),
        blocked_at: context.received_at,
    };
    let flash = format!("You have blocked \"{other}\": neither of you can message the other");
    change_relation(&state, &session, &context, &other, command, flash).await
}

/// `POST /{username}/unblock`.
pub async fn unblock(
    State(state): State<WebState>,
    session: BrowserSession,
    RequestContext(context): RequestContext,
    Path(other): Path<String>,
) -> Result<Response, WebError> {
    let command = UserCommand::Unblock {
        unblocked: other.clone(),
        unblocked_at: context.received_at,
    };
    let flash = format!("You have unblocked \"{other}\"");
    change_relation(&state, &session, &context, &other, command, flash).await
}

/// Signed in (401), the other user exists (404), then the change; back to their page.
async fn change_relation(
    state: &WebState,
    session: &BrowserSession,
    context: &CommandContext,
    other: &str,
    command: UserCommand,
    flash: String,
) -> Result<Response, WebError> {
    let me = session.require_user()?;
    if !state.reads.user_exists(other).await? {
        return Err(WebError::unknown_user());
    }
    state.commands.user(me, command, context).await?;
    session.flash(flash).await?;
    Ok(redirect(&user_href(other)))
}
