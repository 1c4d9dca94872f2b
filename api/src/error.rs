//! The API's errors, and the one place where each becomes an HTTP status.
//!
//! | variant        | status | body `error_msg`             |
//! |----------------|--------|------------------------------|
//! | `NotAuthorized`| 403    | the simulator's fixed text   |
//! | `NotSignedIn`  | 401    | sign in first (the chat's JSON, for browsers) |
//! | `Forbidden`    | 403    | what may not be done         |
//! | `NotFound`     | 404    | what was not found           |
//! | `BadRequest`   | 400    | what is wrong with the input |
//! | `Conflict`     | 409    | the command lost every retry |
//! | `Refused`      | 400, 408, 413, 414 | which limit the request broke (see [`crate::request_limits`]) |
//! | `Internal`     | 500    | a generic text; the cause is logged, never sent |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{ConversationError, MessageError, UserError};
use serde_json::json;

use crate::commands::CommandError;
use crate::request_limits::RefusedRequest;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("You are not authorized to use this resource!")]
    NotAuthorized,
    #[error("You need to sign in to do that.")]
    NotSignedIn,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("The request conflicted with concurrent changes; please retry")]
    Conflict,
    #[error(transparent)]
    Refused(#[from] RefusedRequest),
    #[error("Internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotAuthorized | Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotSignedIn => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict => StatusCode::CONFLICT,
            Self::Refused(refusal) => refusal.status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The 404 for a username nobody registered.
    pub fn unknown_user(username: &str) -> Self {
        Self::NotFound(format!("Unknown user: {username}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(error = format!("{cause:#}"), "request failed");
        }
        let status = self.status();
        let body = json!({"status": status.as_u16(), "error_msg": self.to_string()});
        (status, Json(body)).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<domain::DirectoryError> for ApiError {
    fn from(err: domain::DirectoryError) -> Self {
        Self::Internal(err.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

impl From<CommandError<UserError>> for ApiError {
    fn from(err: CommandError<UserError>) -> Self {
        match err {
            CommandError::Rejected(UserError::Registration(refusal)) => {
                Self::BadRequest(refusal.to_string())
            }
            CommandError::Rejected(UserError::NotRegistered) => {
                Self::NotFound("Unknown user".to_owned())
            }
            CommandError::Rejected(UserError::UnknownOtherUser(name)) => Self::unknown_user(&name),
            CommandError::Rejected(refusal @ UserError::CannotBlockSelf) => {
                Self::BadRequest(refusal.to_string())
            }
            CommandError::Rejected(UserError::Directory(cause)) => cause.into(),
            CommandError::Conflict => Self::Conflict,
            CommandError::Failed(cause) => Self::Internal(cause),
        }
    }
}

impl From<CommandError<MessageError>> for ApiError {
    fn from(err: CommandError<MessageError>) -> Self {
        match err {
            CommandError::Rejected(MessageError::UnknownAuthor(name)) => Self::unknown_user(&name),
            CommandError::Rejected(MessageError::UnknownMessage) => {
                Self::NotFound("Unknown message".to_owned())
            }
            CommandError::Rejected(
                refusal @ (MessageError::UnstorableContent | MessageError::ContentTooLong),
            ) => Self::BadRequest(refusal.to_string()),
            CommandError::Rejected(MessageError::AlreadyPosted) | CommandError::Conflict => {
                Self::Conflict
            }
            CommandError::Rejected(MessageError::Directory(cause)) => cause.into(),
            CommandError::Failed(cause) => Self::Internal(cause),
        }
    }
}

impl From<CommandError<ConversationError>> for ApiError {
    fn from(err: CommandError<ConversationError>) -> Self {
        match err {
            CommandError::Rejected(ConversationError::UnknownRecipient(name)) => {
                Self::unknown_user(&name)
            }
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
            ) => Self::NotFound("No such conversation".to_owned()),
            CommandError::Rejected(refusal @ ConversationError::WrongConversation) => {
                Self::Internal(anyhow::anyhow!(refusal))
            }
            CommandError::Rejected(ConversationError::Contacts(cause)) => cause.into(),
            CommandError::Conflict => Self::Conflict,
            CommandError::Failed(cause) => Self::Internal(cause),
        }
    }
}
