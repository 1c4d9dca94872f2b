//! The limits a request must keep before any handler sees it: the length of its URI, the
//! size of its body, and the time the client may take to send that body.
//!
//! The body is read here, whole, under both limits, and handed on in memory: every handler
//! reads its (small) body whole anyway, and reading it in one place means one deadline and
//! one cap for all routes, answered in each listener's own format (JSON for the simulator,
//! a page for browsers) through [`RefusedRequest`]. The headers' own limits are enforced
//! earlier, by the connection ([`crate::serving`]).

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

/// The longest request target (path and query) accepted. The longest route with the longest
/// username, percent-encoded, and a `latest` take well under a kilobyte.
pub const MAX_URI_BYTES: usize = 4 * 1024;

/// The limits of one listener.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// The largest body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long the client may take to send the whole body.
    pub body_deadline: Duration,
}

/// Why a request was refused before reaching its handler.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedRequest {
    #[error("The request URI can have at most {MAX_URI_BYTES} bytes")]
    UriTooLong,
    #[error("The request body can have at most {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("The request body did not arrive within {} ms", .deadline.as_millis())]
    BodyTooSlow { deadline: Duration },
    #[error("The request body could not be read")]
    BodyUnreadable,
}

impl RefusedRequest {
    /// The HTTP status of this refusal.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UriTooLong => StatusCode::URI_TOO_LONG,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::BodyUnreadable => StatusCode::BAD_REQUEST,
        }
    }
}

/// Middleware: refuses a request breaking `limits` with `E`'s rendering of the refusal,
/// else passes it on with its body read.
pub async fn enforce<E>(
    State(limits): State<RequestLimits>,
    request: Request,
    next: Next,
) -> Response
where
    E: From<RefusedRequest> + IntoResponse,
{
    match read_within(limits, request).await {
        Ok(request) => next.run(request).await,
        Err(refused) => {
            tracing::info!(refused = %refused, "request refused by its limits");
            E::from(refused).into_response()
        }
    }
}

async fn read_within(limits: RequestLimits, request: Request) -> Result<Request, RefusedRequest> {
    let uri_length = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri_length > MAX_URI_BYTES {
        return Err(RefusedRequest::UriTooLong);
    }
    let too_large = RefusedRequest::BodyTooLarge {
        max: limits.max_body_bytes,
    };
    // A declared length over the cap is refused without reading a byte of it.
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limits.max_body_bytes as u64) {
        return Err(too_large);
    }
    let (parts, body) = request.into_parts();
    let reading = Limited::new(body, limits.max_body_bytes).collect();
    let bytes: Bytes = match tokio::time::timeout(limits.body_deadline, reading).await {
        Err(_) => {
            return Err(RefusedRequest::BodyTooSlow {
                deadline: limits.body_deadline,
            })
        }
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large),
        Ok(Err(_)) => return Err(RefusedRequest::BodyUnreadable),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
