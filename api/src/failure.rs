//! What a failed request means, decided once for both listeners.
//!
//! Everything below the HTTP layer fails in its own terms: a command as a [`CommandError`]
//! carrying its aggregate's refusal, a query as a driver error, a domain port as a
//! [`DirectoryError`]. Here each becomes a [`Failure`], the few things a client can be told:
//! the input is wrong, the act is not allowed, something named does not exist, concurrent
//! writes won, the database cannot be reached, or something broke. The API's JSON
//! ([`crate::error::ApiError`]) and the pages' HTML ([`crate::web::error::WebError`]) then
//! only word and render a `Failure`; neither decides what a refusal means.
//!
//! Whether a failure is an outage (503, the client's to wait out) or a bug (500, which
//! retrying will not cure) is decided by [`is_unreachable`].

use commands::accounts::AccountChangeError;
use commands::forgetting::ForgetError;
use commands::CommandError;
use domain::{ConversationError, DirectoryError, MessageError, UserError};

/// What went wrong, as a client is told it.
#[derive(Debug)]
pub enum Failure {
    /// The input breaks a rule; the text says which, for a person to read.
    Invalid(String),
    /// The user may not do this; the text says what.
    Forbidden(String),
    /// What the request names does not exist.
    Missing(Missing),
    /// Concurrent writes won every retry, or the act was already done.
    Conflict,
    /// The database cannot be reached. No cause when the breaker refused the request without
    /// trying (the breaker logged the outage once).
    Unavailable(Option<anyhow::Error>),
    /// Anything else: our own failure. The cause is logged, never sent.
    Internal(anyhow::Error),
}

/// What a request named that does not exist.
#[derive(Debug)]
pub enum Missing {
    /// A user: the one named in the request, or (no name) the one acting.
    User(Option<String>),
    Message,
    Conversation,
}

impl Failure {
    /// `cause` as an outage if it says the database cannot be reached, else as our failure.
    pub fn classify(cause: anyhow::Error) -> Self {
        if is_unreachable(cause.as_ref()) {
            Self::Unavailable(Some(cause))
        } else {
            Self::Internal(cause)
        }
    }
}

/// Whether `err`, or any error in its chain of causes, says the database cannot be reached:
/// the driver's errors as [`database::outage`] classifies them, and the domain's ports
/// reporting an unreachable store.
pub fn is_unreachable(err: &(dyn std::error::Error + 'static)) -> bool {
    database::outage::is_unreachable(err)
        || std::iter::successors(Some(err), |err| err.source()).any(|err| {
            matches!(
                err.downcast_ref::<DirectoryError>(),
                Some(DirectoryError::Unreachable(_))
            )
        })
}

impl<E: std::error::Error> From<CommandError<E>> for Failure
where
    Failure: From<E>,
{
    fn from(err: CommandError<E>) -> Self {
        match err {
            CommandError::Rejected(refusal) => refusal.into(),
            CommandError::Conflict => Self::Conflict,
            CommandError::Unavailable(cause) => Self::Unavailable(Some(cause)),
            CommandError::Failed(cause) => Self::classify(cause),
        }
    }
}

impl From<UserError> for Failure {
    fn from(refusal: UserError) -> Self {
        match refusal {
            UserError::Registration(refusal) => Self::Invalid(refusal.to_string()),
            UserError::NotRegistered => Self::Missing(Missing::User(None)),
            UserError::UnknownOtherUser(name) => Self::Missing(Missing::User(Some(name))),
            refusal @ UserError::CannotBlockSelf => Self::Invalid(refusal.to_string()),
            UserError::Directory(cause) => cause.into(),
        }
    }
}

impl From<MessageError> for Failure {
    fn from(refusal: MessageError) -> Self {
        match refusal {
            MessageError::UnknownAuthor(name) => Self::Missing(Missing::User(Some(name))),
            MessageError::UnknownMessage => Self::Missing(Missing::Message),
            refusal @ (MessageError::UnstorableContent | MessageError::ContentTooLong) => {
                Self::Invalid(refusal.to_string())
            }
            MessageError::AlreadyPosted => Self::Conflict,
            MessageError::Directory(cause) => cause.into(),
        }
    }
}

impl From<ConversationError> for Failure {
    fn from(refusal: ConversationError) -> Self {
        match refusal {
            ConversationError::UnknownRecipient(name) => Self::Missing(Missing::User(Some(name))),
            // Told alike, so that nobody learns from an error that they were blocked; whoever
            // blocked is told of their own block, which they can lift.
            refusal @ (ConversationError::NotConnected
            | ConversationError::Blocked
            | ConversationError::SenderBlocksRecipient) => Self::Forbidden(refusal.to_string()),
            refusal @ (ConversationError::CannotMessageSelf
            | ConversationError::EmptyMessage
            | ConversationError::UnstorableContent
            | ConversationError::ContentTooLong
            | ConversationError::UnknownMessage) => Self::Invalid(refusal.to_string()),
            ConversationError::NotAParticipant | ConversationError::SenderNotRegistered => {
                Self::Missing(Missing::Conversation)
            }
            // The bus routes every command to its own conversation: this is our bug.
            refusal @ ConversationError::WrongConversation => {
                Self::Internal(anyhow::anyhow!(refusal))
            }
            ConversationError::Contacts(cause) => cause.into(),
        }
    }
}

impl From<ForgetError> for Failure {
    fn from(err: ForgetError) -> Self {
        match err {
            ForgetError::UnknownUser(name) => Self::Missing(Missing::User(Some(name))),
            ForgetError::User(err) => err.into(),
            ForgetError::Message(err) => err.into(),
            ForgetError::Conversation(err) => err.into(),
            failed @ ForgetError::Failed { .. } => Self::classify(failed.into()),
        }
    }
}

impl From<AccountChangeError> for Failure {
    fn from(err: AccountChangeError) -> Self {
        match err {
            refusal @ AccountChangeError::WrongPassword => Self::Forbidden(refusal.to_string()),
            AccountChangeError::Invalid(refusal) => Self::Invalid(refusal.to_string()),
            AccountChangeError::Command(err) => err.into(),
            AccountChangeError::Forgetting(err) => err.into(),
            AccountChangeError::Failed(cause) => Self::classify(cause),
        }
    }
}

impl From<DirectoryError> for Failure {
    fn from(err: DirectoryError) -> Self {
        Self::classify(err.into())
    }
}

impl From<sqlx::Error> for Failure {
    fn from(err: sqlx::Error) -> Self {
        Self::classify(err.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Self::classify(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_errors_are_outages_when_they_say_unreachable() {
        assert!(is_unreachable(&DirectoryError::Unreachable("down".into())));
        assert!(!is_unreachable(&DirectoryError::Failed("bad".into())));
        let wrapped = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("reading a timeline");
        assert!(is_unreachable(wrapped.as_ref()));
        assert!(matches!(
            Failure::from(DirectoryError::Unreachable("down".into())),
            Failure::Unavailable(Some(_))
        ));
        assert!(matches!(
            Failure::from(DirectoryError::Failed("bad".into())),
            Failure::Internal(_)
        ));
    }

    #[test]
    fn a_refusal_means_the_same_whichever_aggregate_refused() {
        let unknown: Failure =
            CommandError::Rejected(UserError::UnknownOtherUser("x".into())).into();
        assert!(matches!(unknown, Failure::Missing(Missing::User(Some(name))) if name == "x"));
        let author: Failure =
            CommandError::Rejected(MessageError::UnknownAuthor("x".into())).into();
        assert!(matches!(author, Failure::Missing(Missing::User(Some(name))) if name == "x"));
        let recipient: Failure =
            CommandError::Rejected(ConversationError::UnknownRecipient("x".into())).into();
        assert!(matches!(recipient, Failure::Missing(Missing::User(Some(name))) if name == "x"));
        let repeated: Failure = CommandError::Rejected(MessageError::AlreadyPosted).into();
        assert!(matches!(repeated, Failure::Conflict));
        let lost: Failure = CommandError::<UserError>::Conflict.into();
        assert!(matches!(lost, Failure::Conflict));
        let blocked: Failure = CommandError::Rejected(ConversationError::Blocked).into();
        let unconnected: Failure = CommandError::Rejected(ConversationError::NotConnected).into();
        match (blocked, unconnected) {
            (Failure::Forbidden(a), Failure::Forbidden(b)) => assert_eq!(a, b),
            other => panic!("a block must read as not being connected: {other:?}"),
        }
        let blocking: Failure =
            CommandError::Rejected(ConversationError::SenderBlocksRecipient).into();
        assert!(
            matches!(&blocking, Failure::Forbidden(text) if text.contains("You have blocked")),
            "whoever blocked is told so: {blocking:?}"
        );
    }

    #[test]
    fn a_failed_command_is_an_outage_only_when_the_database_is_unreachable() {
        let down: Failure =
            CommandError::<UserError>::Failed(sqlx::Error::PoolTimedOut.into()).into();
        assert!(matches!(down, Failure::Unavailable(Some(_))));
        let bug: Failure =
            CommandError::<UserError>::Failed(sqlx::Error::RowNotFound.into()).into();
        assert!(matches!(bug, Failure::Internal(_)));
    }
}
