//! The domain's [`UserDirectory`] port, answered from the event store itself.
//!
//! A registration is the first event of a `user` stream, so a primary-key lookup in `events`
//! says whether a username exists — always current, unlike a projected view that may lag.

use async_trait::async_trait;
use domain::{DirectoryError, User, UserDirectory};
use sqlx::PgPool;

use crate::outage;

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
        use cqrs_es::Aggregate as _;
        if !domain::registration::is_storable(username) {
            return Ok(false);
        }
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1)",
        )
        .bind(User::TYPE)
        .bind(username)
        .fetch_one(&self.pool)
        .await
        .map_err(|err| {
            if outage::is_unreachable_sqlx(&err) {
                DirectoryError::Unreachable(err.to_string())
            } else {
                DirectoryError::Failed(err.to_string())
            }
        })
    }
}
