//! What the command side knows about the request behind a command: its id and arrival time,
//! whatever the transport that brought it.
//!
//! Both are written into the metadata of every event the command causes, so an event can be
//! traced back to its request's log line. The HTTP layer builds a context from its request
//! (the id from `x-request-id`); the admin tool builds its own.
//!
//! A request of the simulator also carries its `latest`, which the command side stores in
//! the same statement as the request's events, if it writes any ([`Latest`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};

/// The request id and arrival time of the request a command serves.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub request_id: Option<String>,
    pub received_at: DateTime<Utc>,
    /// The simulator's `latest` of this request, if it has one to store.
    pub latest: Option<Latest>,
}

/// The simulator's `latest` (the number of its action) for one request: stored by the
/// command side with the request's events, which saves the request a round trip, or else
/// by whoever holds the other clone once the request is done ([`Latest::is_stored`]).
#[derive(Debug, Clone)]
pub struct Latest {
    value: i64,
    stored: Arc<AtomicBool>,
}

impl Latest {
    /// `value`, not stored yet.
    pub fn new(value: i64) -> Self {
        Self {
            value,
            stored: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The number to store.
    pub fn value(&self) -> i64 {
        self.value
    }

    /// Whether a command stored it with its events.
    pub fn is_stored(&self) -> bool {
        self.stored.load(Ordering::Acquire)
    }

    /// Records that it was stored (committed with a command's events).
    pub(crate) fn mark_stored(&self) {
        self.stored.store(true, Ordering::Release);
    }
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
