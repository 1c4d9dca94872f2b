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
//! | `TooManyStreams` | 429    | too many live pages open (with `Retry-After`) |
//! | `Unavailable`    | 503    | try again in a moment (with `Retry-After`)  |
//! | `Internal`       | 500    | a generic text; the cause is logged, never shown |
//!
//! (The simulator's JSON errors are worded in [`crate::error`]; what a failure below the HTTP
//! layer means is decided in [`crate::failure`].)

use std::time::Duration;

use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::assets::ASSET_URLS;
use super::pages::{render, Chrome, ErrorPage, Title, Visitor};
use crate::failure::{Failure, Missing};
use crate::outage;
use crate::request_limits::RefusedRequest;

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
    /// The client has as many live streams open as it may ([`super::stream_limits`]); one
    /// may close within the duration.
    #[error("Too many live pages are open; close some and try again.")]
    TooManyStreams(Duration),
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
            Self::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
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
        let retry_after = match &self {
            Self::TooManyStreams(wait) => Some(*wait),
            _ => None,
        };
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
        match retry_after {
            Some(wait) => with_retry_after(response, wait),
            None => response,
        }
    }
}

/// `response` with `Retry-After: wait` (in whole seconds, at least one), for an attempt
/// refused until then.
pub fn with_retry_after(mut response: Response, wait: Duration) -> Response {
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
    response
}

impl<T> From<T> for WebError
where
    Failure: From<T>,
{
    /// How the pages word each [`Failure`].
    fn from(failure: T) -> Self {
        match Failure::from(failure) {
            Failure::Invalid(text) => Self::BadRequest(text),
            Failure::Forbidden(text) => Self::Forbidden(text),
            Failure::Missing(Missing::User(_)) => Self::unknown_user(),
            Failure::Missing(Missing::Message) => {
                Self::NotFound("There is no such message.".to_owned())
            }
            Failure::Missing(Missing::Conversation) => {
                Self::NotFound("There is no such conversation.".to_owned())
            }
            Failure::Conflict => Self::Conflict,
            Failure::Unavailable(cause) => Self::Unavailable(cause),
            Failure::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<tower_sessions::session::Error> for WebError {
    fn from(err: tower_sessions::session::Error) -> Self {
        Self::Internal(err.into())
    }
}
