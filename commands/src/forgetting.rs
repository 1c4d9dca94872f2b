//! Forgetting a person: what a deleted account and `minitwit-replay forget` both do.
//!
//! 1. `UserForgotten` on their stream: from then on the account takes no commands, nobody can
//!    follow or message them, and the name stays taken.
//! 2. Their data key is deleted (see [`database::keyring`]): every field it sealed — their
//!    email, password hashes, messages and private messages — is unreadable in the log, in
//!    every export and on every replica, from now on.
//! 3. Their browser sessions end.
//! 4. The views let go of the copies they made while the key existed: each message they
//!    posted gets `MessageRemoved`, each conversation they were in `ParticipantForgotten`.
//!    Their streams are found in the log itself, not in a view that may lag.
//!
//! Every step does nothing the second time, so running it again finishes a forgetting that
//! was interrupted (the admin tool's `forget` is the way to do that).

use chrono::Utc;
use cqrs_es::Aggregate as _;
use database::event_log;
use domain::{
    Conversation, ConversationCommand, ConversationError, Message, MessageCommand, MessageError,
    UserCommand, UserError,
};

use crate::bus::{CommandBus, CommandError};
use crate::context::CommandContext;

/// What forgetting someone did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgetting {
    /// Whether they had a key until now (false: it was deleted before, or never made).
    pub key_deleted: bool,
    /// How many of their messages the views were told to drop.
    pub messages: usize,
    /// How many conversations their texts were removed from.
    pub conversations: usize,
}

/// Why forgetting did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    /// Nobody registered under the name.
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error(transparent)]
    User(CommandError<UserError>),
    #[error(transparent)]
    Message(CommandError<MessageError>),
    #[error(transparent)]
    Conversation(CommandError<ConversationError>),
    #[error("forgetting {username:?}: {source}")]
    Failed {
        username: String,
        source: anyhow::Error,
    },
}

/// Forgets `username` (see the module's steps); harmless to repeat.
#[tracing::instrument(skip_all, fields(user = username))]
pub async fn forget(
    commands: &CommandBus,
    username: &str,
    context: &CommandContext,
) -> Result<Forgetting, ForgetError> {
    let forgotten_at = Utc::now();
    match commands
        .user(username, UserCommand::Forget { forgotten_at }, context)
        .await
    {
        Ok(()) => {}
        Err(CommandError::Rejected(UserError::NotRegistered)) => {
            return Err(ForgetError::UnknownUser(username.to_owned()))
        }
        Err(err) => return Err(ForgetError::User(err)),
    }
    commands.directory().forget(username);
    let failed = |source: anyhow::Error| ForgetError::Failed {
        username: username.to_owned(),
        source,
    };
    let key_deleted = commands
        .keys()
        .forget(username)
        .await
        .map_err(|err| failed(err.into()))?;

    let pool = commands.pool();
    database::web_sessions::end_sessions_of(pool, username, None)
        .await
        .map_err(|err| failed(err.into()))?;
    let messages =
        event_log::streams_begun_by(pool, Message::TYPE, "MessagePosted", &["author"], username)
            .await
            .map_err(|err| failed(err.into()))?;
    for message_id in &messages {
        let removal = MessageCommand::Remove {
            removed_at: forgotten_at,
        };
        commands
            .message(message_id, removal, context)
            .await
            .map_err(ForgetError::Message)?;
    }
    let conversations = event_log::streams_begun_by(
        pool,
        Conversation::TYPE,
        "PrivateMessageSent",
        &["sender", "recipient"],
        username,
    )
    .await
    .map_err(|err| failed(err.into()))?;
    for conversation_id in &conversations {
        let partner = domain::partner_in(conversation_id, username).ok_or_else(|| {
            failed(anyhow::anyhow!(
                "{username:?} is not in the conversation {conversation_id}"
            ))
        })?;
        let command = ConversationCommand::ForgetParticipant {
            participant: username.to_owned(),
            forgotten_at,
        };
        commands
            .conversation(&partner, command, context)
            .await
            .map_err(ForgetError::Conversation)?;
    }
    metrics::counter!("minitwit_users_forgotten_total").increment(1);
    tracing::info!(
        messages = messages.len(),
        conversations = conversations.len(),
        key_deleted,
        "forgot a user"
    );
    Ok(Forgetting {
        key_deleted,
        messages: messages.len(),
        conversations: conversations.len(),
    })
}
