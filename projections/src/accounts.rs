//! The accounts projection: who is registered, and who follows whom.
//!
//! Tables (in schema `accounts_v<version>`):
//! - `users`: one row per registered user, with what login needs (the newest password
//!   hash: a `PasswordHashUpgraded` replaces the registered one).
//! - `follows`: one row per current follow; `position` is the log position of the follow,
//!   which orders a user's follows oldest first.

use async_trait::async_trait;
use cqrs_es::persist::EventUpcaster;
use domain::{User, UserEvent};
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::projector::Projection;

/// Users and follows, from the `user` aggregate's events.
pub struct Accounts;

#[async_trait]
impl Projection for Accounts {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["user"]
    }

    fn create_tables_sql(&self, schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.users (
                 username      text        PRIMARY KEY,
                 email         text        NOT NULL,
                 password_hash text        NOT NULL,
                 registered_at timestamptz NOT NULL,
                 position      bigint      NOT NULL
             );
             CREATE TABLE IF NOT EXISTS {schema}.follows (
                 follower    text        NOT NULL,
                 followee    text        NOT NULL,
                 followed_at timestamptz NOT NULL,
                 position    bigint      NOT NULL,
                 PRIMARY KEY (follower, followee)
             );
             -- A user's follows, oldest first (GET /fllws/<user>).
             CREATE INDEX IF NOT EXISTS follows_by_follower
                 ON {schema}.follows (follower, position);
             -- Who follows a user (the browser's follower counts and fan-out).
             CREATE INDEX IF NOT EXISTS follows_by_followee
                 ON {schema}.follows (followee);"
        )
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        event: &StoredEvent,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<()> {
        let envelope = event.decode::<User>(upcasters)?;
        let user = &envelope.aggregate_id;
        let position = event.position.global_position;
        match envelope.payload {
            UserEvent::UserRegistered {
                username,
                email,
                password_hash,
                registered_at,
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.users \
                         (username, email, password_hash, registered_at, position) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING"
                ))
                .bind(username)
                .bind(email)
                .bind(password_hash.as_str())
                .bind(registered_at)
                .bind(position)
                .execute(conn)
                .await?;
            }
            UserEvent::UserFollowed {
                followee,
                followed_at,
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.follows (follower, followee, followed_at, position) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (follower, followee) DO NOTHING"
                ))
                .bind(user)
                .bind(followee)
                .bind(followed_at)
                .bind(position)
                .execute(conn)
                .await?;
            }
            UserEvent::UserUnfollowed { followee, .. } => {
                // Only a follow older than this event is removed, so applying the unfollow
                // again after a later re-follow cannot undo that re-follow.
                sqlx::query(&format!(
                    "DELETE FROM {schema}.follows \
                     WHERE follower = $1 AND followee = $2 AND position < $3"
                ))
                .bind(user)
                .bind(followee)
                .bind(position)
                .execute(conn)
                .await?;
            }
            UserEvent::PasswordHashUpgraded { password_hash, .. } => {
                sqlx::query(&format!(
                    "UPDATE {schema}.users SET password_hash = $2 WHERE username = $1"
                ))
                .bind(user)
                .bind(password_hash.as_str())
                .execute(conn)
                .await?;
            }
        }
        Ok(())
    }
}
