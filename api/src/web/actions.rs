//! What signed-in users do from the pages: post a message, follow and unfollow, block and
//! unblock.
//!
//! Each is a command through the same bus as the simulator's API, so the browser and the API
//! produce the same events, and each answers only once the views include it: the page the
//! redirect lands on already shows the change.

use axum::extract::{Path, State};
use axum::response::Response;
use commands::{CommandContext, CommandError};
use domain::UserCommand;
use serde::Deserialize;

use super::error::WebError;
use super::form::FormData;
use super::pages::{redirect, user_href};
use super::session::BrowserSession;
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

/// `POST /{username}/block`: they can no longer send the signed-in user private messages.
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
    let flash = format!("\"{other}\" can no longer send you messages");
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
    let flash = format!("\"{other}\" can send you messages again");
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
