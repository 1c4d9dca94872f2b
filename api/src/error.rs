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
//! What a failure below the HTTP layer means (a refusal, a conflict, an outage, a bug) is
//! decided in [`crate::failure`]; this module only words it.
//!
//! A request axum's extractors cannot read (a path segment that is not UTF-8, say) is a
//! `BadRequest` too, with the extractor's explanation, so every answer has the same shape.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::failure::{Failure, Missing};
use crate::outage;
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

impl<T> From<T> for ApiError
where
    Failure: From<T>,
{
    /// How the API words each [`Failure`].
    fn from(failure: T) -> Self {
        match Failure::from(failure) {
            Failure::Invalid(text) => Self::BadRequest(text),
            Failure::Forbidden(text) => Self::Forbidden(text),
            Failure::Missing(Missing::User(Some(name))) => Self::unknown_user(&name),
            Failure::Missing(Missing::User(None)) => Self::NotFound("Unknown user".to_owned()),
            Failure::Missing(Missing::Message) => Self::NotFound("Unknown message".to_owned()),
            Failure::Missing(Missing::Conversation) => {
                Self::NotFound("No such conversation".to_owned())
            }
            Failure::Conflict => Self::Conflict,
            Failure::Unavailable(cause) => Self::Unavailable(cause),
            Failure::Internal(cause) => Self::Internal(cause),
        }
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
