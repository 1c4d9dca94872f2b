//! The request behind a command, as HTTP sees it: the extractor that builds a
//! [`CommandContext`] from the request being served.
//!
//! The id comes from the `x-request-id` header, which the outermost middleware sets (or keeps,
//! if a proxy already set it) and echoes in the response; the simulator's `latest`, from the
//! request's extensions, where the simulator API's middleware puts it.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::Utc;
use commands::{CommandContext, Latest};

/// The header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Extracts the [`CommandContext`] of the request being served: its id, arrival time and
/// `latest`.
#[derive(Debug, Clone)]
pub struct RequestContext(pub CommandContext);

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .headers
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Self(CommandContext {
            request_id,
            received_at: Utc::now(),
            latest: parts.extensions.get::<Latest>().cloned(),
        }))
    }
}
