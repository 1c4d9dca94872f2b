//! Bounds on the live streams open at once — timelines and chat — per client address and per
//! signed-in user.
//!
//! A stream holds a connection, a task and a subscription for as long as its page is open, so
//! without a bound one client could hold thousands. Past a bound the answer is 429 with
//! `Retry-After`; the page still works, without live updates, and `EventSource` does not retry
//! a 429, so a refused page does not come back every few seconds. A signed-in user's streams
//! count against both their address and their name, so opening pages from many addresses
//! does not get around the bound either.
//!
//! Counted per replica, in memory: a stream lives on the replica that serves it, and the
//! count must fall the moment it closes, which no shared store would see sooner. nginx bounds
//! connections per address in front of all replicas (`ops/nginx/nginx.conf`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_stream::StreamExt as _;

use super::error::WebError;
use super::proxy::ClientAddress;
use super::session::BrowserSession;
use super::WebState;

/// How long a refused client is asked to wait: streams close as pages do, so the count
/// changes within seconds.
const RETRY_AFTER: Duration = Duration::from_secs(10);

/// The open streams of this replica, by address and by signed-in user, and their bounds.
pub struct StreamLimits {
    per_address: usize,
    per_user: usize,
    open: Mutex<OpenStreams>,
}

#[derive(Default)]
struct OpenStreams {
    by_address: HashMap<IpAddr, usize>,
    by_user: HashMap<String, usize>,
}

impl StreamLimits {
    /// Bounds of `per_address` streams for each client address and `per_user` for each
    /// signed-in user (each at least one).
    pub fn new(per_address: usize, per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            per_address: per_address.max(1),
            per_user: per_user.max(1),
            open: Mutex::default(),
        })
    }

    /// Counts one more stream for `address` and `user`, unless either is at its bound.
    fn open(self: &Arc<Self>, address: IpAddr, user: Option<&str>) -> Option<StreamPermit> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let by_address = open.by_address.get(&address).copied().unwrap_or(0);
        let by_user = user.map_or(0, |user| open.by_user.get(user).copied().unwrap_or(0));
        if by_address >= self.per_address || by_user >= self.per_user {
            return None;
        }
        *open.by_address.entry(address).or_default() += 1;
        if let Some(user) = user {
            *open.by_user.entry(user.to_owned()).or_default() += 1;
        }
        Some(StreamPermit {
            limits: self.clone(),
            address,
            user: user.map(str::to_owned),
        })
    }
}

/// One open stream, counted until dropped.
struct StreamPermit {
    limits: Arc<StreamLimits>,
    address: IpAddr,
    user: Option<String>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        release(&mut open.by_address, &self.address);
        if let Some(user) = &self.user {
            release(&mut open.by_user, user);
        }
    }
}

/// Counts one stream less for `key`, forgetting keys with none, so the maps stay as small
/// as the set of clients with a stream open.
fn release<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: &K) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
}

/// Middleware: refuses a request for a live stream past the client's bounds (429 with
/// `Retry-After`), and otherwise counts the stream it answers with until its body is
/// dropped — when the client goes away or the stream ends.
pub async fn bound_live_streams(
    State(state): State<WebState>,
    request: Request,
    next: Next,
) -> Response {
    if !asks_for_stream(&request) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let Ok(ClientAddress(address)) = ClientAddress::from_request_parts(&mut parts, &state).await;
    let session = match BrowserSession::from_request_parts(&mut parts, &state).await {
        Ok(session) => session,
        Err(err) => return err.into_response(),
    };
    let Some(permit) = state.stream_limits.open(address, session.username()) else {
        metrics::counter!("minitwit_live_streams_refused_total").increment(1);
        return WebError::TooManyStreams(RETRY_AFTER).into_response();
    };
    let response = next.run(Request::from_parts(parts, body)).await;
    if !is_stream(&response) {
        // Nothing to stream after all (no such user, nobody signed in): nothing held open.
        return response;
    }
    response.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            // The permit lives as long as the stream's body.
            let _held = &permit;
            chunk
        }))
    })
}

/// A timeline asked for with `Accept: text/event-stream`, or the chat's stream.
fn asks_for_stream(request: &Request) -> bool {
    request.uri().path() == "/chat/live"
        || request
            .headers()
            .get(ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/event-stream"))
}

fn is_stream(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_and_each_user_has_its_own_bound_and_closed_streams_free_their_place() {
        let limits = StreamLimits::new(2, 1);
        let first = IpAddr::from([10, 0, 0, 1]);
        let second = IpAddr::from([10, 0, 0, 2]);
        let anonymous = [limits.open(first, None), limits.open(first, None)];
        assert!(anonymous.iter().all(Option::is_some));
        assert!(limits.open(first, None).is_none(), "the address is full");
        assert!(limits.open(first, Some("alice")).is_none(), "for users too");

        let alice = limits.open(second, Some("alice"));
        assert!(alice.is_some());
        assert!(
            limits
                .open(IpAddr::from([10, 0, 0, 3]), Some("alice"))
                .is_none(),
            "alice is full from any address"
        );
        assert!(limits.open(second, Some("bob")).is_some(), "bob is not");

        drop(anonymous);
        drop(alice);
        assert!(limits.open(first, None).is_some());
        assert!(limits.open(first, Some("alice")).is_some());
        let open = limits.open.lock().unwrap();
        assert!(open.by_address.is_empty() && open.by_user.is_empty());
    }
}
