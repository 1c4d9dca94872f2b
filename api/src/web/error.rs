//! The browser pages' errors, and the one place where each becomes an HTTP status and a page.
//!
//! | variant          | status | page says                                   |
//! |------------------|--------|---------------------------------------------|
//! | `NotSignedIn`    | 401    | sign in first                               |
//! | `CrossOrigin`    | 403    | the request came from another site          |
//! | `Forbidden`      | 403    | what may not be done                        |
//! | `NotFound`       | 404    | what was not found                          |
//! | `BadRequest`     | 400    | what is wrong with the input                |
//! | `Conflict`       | 409    | concurrent changes won every retry          |
//! | `Refused`        | 400, 408, 413, 414 | which limit the request broke ([`crate::request_limits`]) |
//! | `Unavailable`    | 503    | try again in a moment (with `Retry-After`)  |
//! | `Internal`       | 500    | a generic text; the cause is logged, never shown |
//!
//! (The simulator's JSON errors are mapped in [`crate::error`]; which database errors are
//! `Unavailable` is decided by [`crate::outage`].)

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use domain::{ConversationError, MessageError, UserError};

use super::assets::ASSET_URLS;
use super::pages::{render, Chrome, ErrorPage, Title, Visitor};
use crate::outage::{self, OutageAware};
use crate::request_limits::RefusedRequest;
use commands::CommandError;

/// Everything a page request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("You need to sign in to do that.")]
    NotSignedIn,
    #[error("This request came from another site, so it was refused.")]
    CrossOrigin,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("Someone else changed this at the same moment; please try again.")]
    Conflict,
    #[error(transparent)]
    Refused(#[from] RefusedRequest),
    /// The database cannot be reached. No cause when the breaker refused the request
    /// without trying (the breaker logged the outage once).
    #[error("The service is briefly unavailable; please try again in a moment.")]
    Unavailable(#[source] Option<anyhow::Error>),
    #[error("Something went wrong on our side; please try again later.")]
    Internal(#[source] anyhow::Error),
}

impl WebError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotSignedIn => StatusCode::UNAUTHORIZED,
            Self::CrossOrigin | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Refused(refusal) => refusal.status(),
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The 404 of a username nobody registered.
    pub fn unknown_user() -> Self {
        Self::NotFound("There is no user by that name.".to_owned())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "page request failed");
            }
            Self::Unavailable(Some(cause)) => tracing::warn!(
                error = format!("{cause:#}"),
                "page request failed: the database cannot be reached"
            ),
            _ => {}
        }
        let unavailable = matches!(self, Self::Unavailable(_));
        let status = self.status();
        let page = ErrorPage {
            chrome: Chrome {
                visitor: Visitor::Unknown,
                unread: 0,
                flashes: Vec::new(),
                assets: &ASSET_URLS,
            },
            title: Title::fixed(status.canonical_reason().unwrap_or("Error")),
            explanation: self.to_string(),
        };
        let mut response = render(status, &page);
        if unavailable {
            outage::mark_unavailable(&mut response);
        }
        response
    }
}

impl OutageAware for WebError {
    fn unavailable(cause: Option<anyhow::Error>) -> Self {
        Self::Unavailable(cause)
    }

    fn internal(cause: anyhow::Error) -> Self {
        Self::Internal(cause)
    }
}

impl From<sqlx::Error> for WebError {
    fn from(err: sqlx::Error) -> Self {
        Self::classify(err.into())
    }
}

impl From<anyhow::Error> for WebError {
    fn from(err: anyhow::Error) -> Self {
        Self::classify(err)
    }
}

impl From<tower_sessions::session::Error> for WebError {
    fn from(err: tower_sessions::session::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<CommandError<UserError>> for WebError {
    fn from(err: CommandError<UserError>) -> Self {
        match err {
            CommandError::Rejected(UserError::Registration(refusal)) => {
                Self::BadRequest(refusal.to_string())
            }
            CommandError::Rejected(refusal @ UserError::CannotBlockSelf) => {
                Self::BadRequest(refusal.to_string())
            }
            CommandError::Rejected(UserError::NotRegistered | UserError::UnknownOtherUser(_)) => {
                Self::unknown_user()
            }
            CommandError::Rejected(UserError::Directory(cause)) => Self::classify(cause.into()),
            CommandError::Conflict => Self::Conflict,
            CommandError::Unavailable(cause) => Self::Unavailable(Some(cause)),
            CommandError::Failed(cause) => Self::classify(cause),
        }
    }
}

impl From<CommandError<MessageError>> for WebError {
    fn from(err: CommandError<MessageError>) -> Self {
        match err {
            CommandError::Rejected(MessageError::UnknownAuthor(_)) => Self::unknown_user(),
            CommandError::Rejected(MessageError::UnknownMessage) => {
                Self::NotFound("There is no such message.".to_owned())
            }
            CommandError::Rejected(
                refusal @ (MessageError::UnstorableContent | MessageError::ContentTooLong),
            ) => Self::BadRequest(refusal.to_string()),
            CommandError::Rejected(MessageError::AlreadyPosted) | CommandError::Conflict => {
                Self::Conflict
            }
            CommandError::Rejected(MessageError::Directory(cause)) => Self::classify(cause.into()),
            CommandError::Unavailable(cause) => Self::Unavailable(Some(cause)),
            CommandError::Failed(cause) => Self::classify(cause),
        }
    }
}

impl From<CommandError<ConversationError>> for WebError {
    fn from(err: CommandError<ConversationError>) -> Self {
        match err {
            CommandError::Rejected(ConversationError::UnknownRecipient(_)) => Self::unknown_user(),
            // Told alike, so that nobody learns from an error that they were blocked.
            CommandError::Rejected(
                refusal @ (ConversationError::NotConnected | ConversationError::Blocked),
            ) => Self::Forbidden(refusal.to_string()),
            CommandError::Rejected(
                refusal @ (ConversationError::CannotMessageSelf
                | ConversationError::EmptyMessage
                | ConversationError::UnstorableContent
                | ConversationError::ContentTooLong
                | ConversationError::UnknownMessage),
            ) => Self::BadRequest(refusal.to_string()),
            CommandError::Rejected(
                ConversationError::NotAParticipant | ConversationError::SenderNotRegistered,
            ) => Self::NotFound("There is no such conversation.".to_owned()),
            CommandError::Rejected(refusal @ ConversationError::WrongConversation) => {
                Self::Internal(anyhow::anyhow!(refusal))
            }
            CommandError::Rejected(ConversationError::Contacts(cause)) => {
                Self::classify(cause.into())
            }
            CommandError::Conflict => Self::Conflict,
            CommandError::Unavailable(cause) => Self::Unavailable(Some(cause)),
            CommandError::Failed(cause) => Self::classify(cause),
        }
    }
}
