//! The named read queries the HTTP layer calls, on the serving version of each view.
//!
//! Every timeline reads a partial index that leaves flagged messages out, newest first by
//! `pub_date` and then by log position.

use sqlx::{PgPool, Row};

use crate::accounts::Accounts;
use crate::projector::{schema_name, Projection};
use crate::timeline::Timeline;

/// One message as timelines show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub author: String,
    pub content: String,
    /// Unix time in seconds.
    pub pub_date: i64,
}

/// Read access to the projected views.
#[derive(Clone)]
pub struct ReadModels {
    pool: PgPool,
    accounts: String,
    timeline: String,
}

impl ReadModels {
    /// Reads the versions of the views this build serves.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            accounts: schema_name(Accounts.name(), Accounts.version()),
            timeline: schema_name(Timeline.name(), Timeline.version()),
        }
    }

    /// Whether `username` is a registered user.
    pub async fn user_exists(&self, username: &str) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {}.users WHERE username = $1)",
            self.accounts
        ))
        .bind(username)
        .fetch_one(&self.pool)
        .await
    }

    /// The newest `limit` messages of everyone.
    pub async fn public_timeline(&self, limit: i64) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        let sql = format!(
            "SELECT author, content, pub_date FROM {}.messages WHERE NOT flagged \
             ORDER BY pub_date DESC, position DESC LIMIT $1",
            self.timeline
        );
        self.timeline_entries(sqlx::query(&sql).bind(limit)).await
    }

    /// The newest `limit` messages of `author`.
    pub async fn user_timeline(
        &self,
        author: &str,
        limit: i64,
    ) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        let sql = format!(
            "SELECT author, content, pub_date FROM {}.messages WHERE author = $1 AND NOT flagged \
             ORDER BY pub_date DESC, position DESC LIMIT $2",
            self.timeline
        );
        self.timeline_entries(sqlx::query(&sql).bind(author).bind(limit))
            .await
    }

    /// The newest `limit` messages of `user` and of everyone `user` follows ("my timeline").
    /// Served by the per-author index: one short index range per followed author, merged.
    pub async fn personal_timeline(
        &self,
        user: &str,
        limit: i64,
    ) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        let sql = format!(
            "SELECT author, content, pub_date FROM {timeline}.messages \
             WHERE NOT flagged AND (author = $1 OR author IN \
                 (SELECT followee FROM {accounts}.follows WHERE follower = $1)) \
             ORDER BY pub_date DESC, position DESC LIMIT $2",
            timeline = self.timeline,
            accounts = self.accounts
        );
        self.timeline_entries(sqlx::query(&sql).bind(user).bind(limit))
            .await
    }

    /// Whom `follower` follows, oldest follow first, at most `limit`.
    pub async fn followees(&self, follower: &str, limit: i64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(&format!(
            "SELECT followee FROM {}.follows WHERE follower = $1 ORDER BY position LIMIT $2",
            self.accounts
        ))
        .bind(follower)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    async fn timeline_entries(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(TimelineEntry {
                    author: row.try_get("author")?,
                    content: row.try_get("content")?,
                    pub_date: row.try_get("pub_date")?,
                })
            })
            .collect()
    }
}
