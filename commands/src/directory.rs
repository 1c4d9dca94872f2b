//! The domain's [`UserDirectory`] and [`ContactBook`] ports, answered from the event store
//! itself — always current, unlike a projected view that may lag.
//!
//! A registration is the first event of a `user` stream, so a primary-key lookup in `events`
//! says whether a username exists. How two users stand to each other (follows, blocks) is
//! their two streams folded into their aggregates' states, the very states their own
//! commands are decided on.

use async_trait::async_trait;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate as _, EventEnvelope};
use database::event_log::{self, StreamEvent};
use database::outage;
use domain::{ContactBook, DirectoryError, Standing, User, UserDirectory};
use sqlx::PgPool;

/// Answers "is this username registered?" from the `events` table.
#[derive(Clone)]
pub struct EventStoreDirectory {
    pool: PgPool,
}

impl EventStoreDirectory {
    /// A directory reading through `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl UserDirectory for EventStoreDirectory {
    async fn is_registered(&self, username: &str) -> Result<bool, DirectoryError> {
        if !domain::registration::is_storable(username) {
            return Ok(false);
        }
        event_log::stream_started(&self.pool, User::TYPE, username)
            .await
            .map_err(directory_error)
    }
}

/// A failed read of the store, as the domain's ports report it: unreachable (an outage) or
/// failed (anything else).
fn directory_error(err: sqlx::Error) -> DirectoryError {
    if outage::is_unreachable_sqlx(&err) {
        DirectoryError::Unreachable(err.to_string())
    } else {
        DirectoryError::Failed(err.to_string())
    }
}

impl EventStoreDirectory {
    /// The state of `username`'s `User` aggregate, if registered (only a registration
    /// starts a user stream).
    async fn user(&self, username: &str) -> Result<Option<User>, DirectoryError> {
        if !domain::registration::is_storable(username) {
            return Ok(None);
        }
        let events = event_log::stream(&self.pool, User::TYPE, username)
            .await
            .map_err(directory_error)?;
        if events.is_empty() {
            return Ok(None);
        }
        let upcasters = domain::upcasting::upcasters();
        let mut user = User::default();
        for event in events {
            let event = decode(username, event, &upcasters).map_err(|err| {
                DirectoryError::Failed(format!("reading {username:?}'s stream: {err}"))
            })?;
            user.apply(event.payload);
        }
        Ok(Some(user))
    }
}

/// An event of `username`'s stream as the `User` aggregate's, upcast to its current version.
fn decode(
    username: &str,
    event: StreamEvent,
    upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
) -> anyhow::Result<EventEnvelope<User>> {
    let serialized = SerializedEvent::new(
        username.to_owned(),
        usize::try_from(event.sequence)?,
        User::TYPE.to_owned(),
        event.event_type,
        event.event_version,
        event.payload,
        event.metadata,
    );
    let upcast = domain::upcasting::upcast(serialized, upcasters);
    Ok(EventEnvelope::try_from(upcast)?)
}

#[async_trait]
impl ContactBook for EventStoreDirectory {
    async fn standing(&self, sender: &str, recipient: &str) -> Result<Standing, DirectoryError> {
        let (sender_state, recipient_state) =
            tokio::try_join!(self.user(sender), self.user(recipient))?;
        Ok(Standing {
            sender_registered: sender_state.is_some(),
            recipient_registered: recipient_state.is_some(),
            sender_follows_recipient: sender_state
                .as_ref()
                .is_some_and(|state| state.follows(recipient)),
            recipient_follows_sender: recipient_state
                .as_ref()
                .is_some_and(|state| state.follows(sender)),
            recipient_blocks_sender: recipient_state
                .as_ref()
                .is_some_and(|state| state.blocks(sender)),
        })
    }
}
