//! What the command side knows about the request behind a command: its id and arrival time,
//! whatever the transport that brought it.
//!
//! Both are written into the metadata of every event the command causes, so an event can be
//! traced back to its request's log line. The HTTP layer builds a context from its request
//! (the id from `x-request-id`); the admin tool builds its own.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// The request id and arrival time of the request a command serves.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub request_id: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl CommandContext {
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
