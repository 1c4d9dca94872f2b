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
//! | `Unavailable`  | 503    | retry shortly (with `Retry-After`); the cause is logged |
//! | `Internal`     | 500    | a generic text; the cause is logged, never sent |
//!
//! Whether a database error is `Unavailable` (the database cannot be reached) or `Internal`
//! (anything else) is decided by [`crate::outage`].
//!
//! A request axum's extractors cannot read (a path segment that is not UTF-8, say) is a
//! `BadRequest` too, with the extractor's explanation, so every answer has the same shape.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{ConversationError, MessageError, UserError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::outage::{self, OutageAware};
use crate::request_limits::RefusedRequest;
use commands::CommandError;

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
    /// The database cannot be reached. No cause when the breaker refused the request
    /// without trying (the breaker logged the outage once).
    #[error("The service is temporarily unavailable; please retry shortly")]
    Unavailable(#[source] Option<anyhow::Error>),
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
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The 404 for a username nobody registered.
    pub fn unknown_user(username: &str) -> Self {
        Self::NotFound(format!("Unknown user: {username}"))
    }

    /// An extractor's refusal: the client's fault (4xx) is a 400 with axum's explanation;
    /// anything else is our own mistake, such as a route template that lacks a parameter its
    /// handler extracts.
    fn unreadable_request(status: StatusCode, explanation: String) -> Self {
        if status.is_client_error() {
            Self::BadRequest(explanation)
        } else {
            Self::Internal(anyhow::anyhow!(explanation))
        }
    }
}

/// The body of every error answer, and its schema in the OpenAPI description.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"status": 404, "error_msg": "Unknown user: Roger Histand"}))]
pub struct ErrorBody {
    /// The HTTP status code, repeated.
    pub status: u16,
    /// What went wrong, for a person to read.
    pub error_msg: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed")
            }
            Self::Unavailable(Some(cause)) => tracing::warn!(
                error = format!("{cause:#}"),
                "request failed: the database cannot be reached"
            ),
            _ => {}
        }
        let status = self.status();
        let body = ErrorBody {
            status: status.as_u16(),
            error_msg: self.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if let Self::Unavailable(_) = self {
            outage::mark_unavailable(&mut response);
        }
        response
    }
}

impl OutageAware for ApiError {
    fn unavailable(cause: Option<anyhow::Error>) -> Self {
        Self::Unavailable(cause)
    }

    fn internal(cause: anyhow::Error) -> Self {
        Self::Internal(cause)
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::unreadable_request(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::unreadable_request(rejection.status(), rejection.body_text())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        Self::classify(err.into())
    }
}

impl From<domain::DirectoryError> for ApiError {
    fn from(err: domain::DirectoryError) -> Self {
        Self::classify(err.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::classify(err)
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
            CommandError::Unavailable(cause) => Self::Unavailable(Some(cause)),
            CommandError::Failed(cause) => Self::classify(cause),
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
            CommandError::Unavailable(cause) => Self::Unavailable(Some(cause)),
            CommandError::Failed(cause) => Self::classify(cause),
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
            CommandError::Unavailable(cause) => Self::Unavailable(Some(cause)),
            CommandError::Failed(cause) => Self::classify(cause),
        }
    }
}
