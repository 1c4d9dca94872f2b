//! What the server knows about the request behind a command: its id and arrival time.
//!
//! The id comes from the `x-request-id` header, which the outermost middleware sets (or keeps,
//! if a proxy already set it) and echoes in the response. It is written into the metadata of
//! every event the request causes, so an event can be traced back to its request's log line.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};

/// The header carrying the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id and arrival time of the request being served.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl RequestContext {
    /// The metadata stored with every event this request causes.
    pub fn event_metadata(&self) -> HashMap<String, String> {
        let mut metadata =
            HashMap::from([("received_at".to_owned(), self.received_at.to_rfc3339())]);
        if let Some(id) = &self.request_id {
            metadata.insert("request_id".to_owned(), id.clone());
        }
        metadata
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let request_id = parts
            .headers
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok(Self {
            request_id,
            received_at: Utc::now(),
        })
    }
}
