//! The domain's [`UserDirectory`] and [`ContactBook`] ports, answered from the event store
//! itself — always current, unlike a projected view that may lag.
//!
//! A registration is the first event of a `user` stream, so a primary-key lookup in `events`
//! says whether a username exists, and a forgetting ends the stream: a forgotten user is as
//! unknown as one who never registered. The yes answers are remembered, and a no asks the
//! store again — another replica may have registered the name since. A remembered yes is
//! dropped when the user is forgotten ([`EventStoreDirectory::forget`]), here or, by the
//! forgetting's notification, on another replica. How two users stand to
//! each other (follows, blocks) is their two streams folded into their aggregates' states,
//! the very states their own commands are decided on, read through the same cache.

use async_trait::async_trait;
use cqrs_es::{Aggregate as _, AggregateError};
use database::event_log;
use database::outage;
use domain::{ContactBook, DirectoryError, Standing, User, UserDirectory};
use quick_cache::sync::Cache;
use sqlx::PgPool;

use crate::store::AggregateStore;

/// How many registered names are remembered; past it, the least used are asked for again.
const REMEMBERED_NAMES: usize = 100_000;

/// Answers "is this username registered?" and "how do these two stand?" from the store.
#[derive(Clone)]
pub struct EventStoreDirectory {
    pool: PgPool,
    users: AggregateStore<User>,
    registered: std::sync::Arc<Cache<String, ()>>,
}

impl EventStoreDirectory {
    /// A directory reading through `pool`, and users' states through `users`.
    pub fn new(pool: PgPool, users: AggregateStore<User>) -> Self {
        Self {
            pool,
            users,
            registered: std::sync::Arc::new(Cache::new(REMEMBERED_NAMES)),
        }
    }

    /// Stops remembering that `username` is registered: they were forgotten.
    pub fn forget(&self, username: &str) {
        self.registered.remove(username);
    }

    /// How `username`'s user stands: `None` if not registered, else what `read` says of it.
    async fn user<T>(
        &self,
        username: &str,
        read: impl FnOnce(&User) -> T,
    ) -> Result<Option<T>, DirectoryError> {
        if !domain::registration::is_storable(username) {
            return Ok(None);
        }
        self.users
            .current(username, read)
            .await
            .map_err(|err| match err {
                AggregateError::DatabaseConnectionError(cause)
                    if outage::is_unreachable(cause.as_ref()) =>
                {
                    DirectoryError::Unreachable(cause.to_string())
                }
                other => DirectoryError::Failed(format!("reading {username:?}'s stream: {other}")),
            })
    }
}

#[async_trait]
impl UserDirectory for EventStoreDirectory {
    async fn is_registered(&self, username: &str) -> Result<bool, DirectoryError> {
        if !domain::registration::is_storable(username) {
            return Ok(false);
        }
        if self.registered.get(username).is_some() {
            return Ok(true);
        }
        let registered = event_log::stream_open(&self.pool, User::TYPE, username, "UserForgotten")
            .await
            .map_err(|err| {
                if outage::is_unreachable_sqlx(&err) {
                    DirectoryError::Unreachable(err.to_string())
                } else {
                    DirectoryError::Failed(err.to_string())
                }
            })?;
        if registered {
            self.registered.insert(username.to_owned(), ());
        }
        Ok(registered)
    }
}

#[async_trait]
impl ContactBook for EventStoreDirectory {
    async fn standing(&self, sender: &str, recipient: &str) -> Result<Standing, DirectoryError> {
        // A forgotten user stands as one who never registered.
        let (sender_state, recipient_state) = tokio::try_join!(
            self.user(sender, |state| state
                .is_active()
                .then(|| (state.follows(recipient), state.blocks(recipient)))),
            self.user(recipient, |state| state
                .is_active()
                .then(|| (state.follows(sender), state.blocks(sender)))),
        )?;
        let (sender_state, recipient_state) = (sender_state.flatten(), recipient_state.flatten());
        Ok(Standing {
            sender_registered: sender_state.is_some(),
            recipient_registered: recipient_state.is_some(),
            sender_follows_recipient: sender_state.is_some_and(|(follows, _)| follows),
            recipient_follows_sender: recipient_state.is_some_and(|(follows, _)| follows),
            recipient_blocks_sender: recipient_state.is_some_and(|(_, blocks)| blocks),
            sender_blocks_recipient: sender_state.is_some_and(|(_, blocks)| blocks),
        })
    }
}
