//! The timeline projection: messages, shaped for the three timelines.
//!
//! One table, `messages` (in schema `timeline_v<version>`), newest first by `pub_date`
//! (Unix seconds, as the original stores it) with ties broken by log position, newest
//! written first. Flagged messages stay in the table but out of the partial indexes every
//! timeline reads, so unflagging brings them back without a rebuild.

use async_trait::async_trait;
use cqrs_es::persist::EventUpcaster;
use domain::{Message, MessageEvent};
use sqlx::PgConnection;

use crate::log::StoredEvent;
use crate::projector::Projection;

/// Messages, from the `message` aggregate's events.
pub struct Timeline;

#[async_trait]
impl Projection for Timeline {
    fn name(&self) -> &'static str {
        "timeline"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &["message"]
    }

    fn create_tables_sql(&self, schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.messages (
                 message_id text        PRIMARY KEY,
                 author     text        NOT NULL,
                 content    text        NOT NULL,
                 pub_date   bigint      NOT NULL,
                 posted_at  timestamptz NOT NULL,
                 position   bigint      NOT NULL,
                 flagged    boolean     NOT NULL DEFAULT false
             );
             -- The public timeline.
             CREATE INDEX IF NOT EXISTS messages_public
                 ON {schema}.messages (pub_date DESC, position DESC) WHERE NOT flagged;
             -- One author's timeline, and each followee's slice of \"my\" timeline.
             CREATE INDEX IF NOT EXISTS messages_by_author
                 ON {schema}.messages (author, pub_date DESC, position DESC) WHERE NOT flagged;"
        )
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        event: &StoredEvent,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<()> {
        let envelope = event.decode::<Message>(upcasters)?;
        let message_id = &envelope.aggregate_id;
        match envelope.payload {
            MessageEvent::MessagePosted {
                author,
                content,
                posted_at,
            } => {
                sqlx::query(&format!(
                    "INSERT INTO {schema}.messages \
                         (message_id, author, content, pub_date, posted_at, position) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (message_id) DO NOTHING"
                ))
                .bind(message_id)
                .bind(author)
                .bind(content)
                .bind(posted_at.timestamp())
                .bind(posted_at)
                .bind(event.position.global_position)
                .execute(conn)
                .await?;
            }
            MessageEvent::MessageFlagged { .. } => set_flag(conn, schema, message_id, true).await?,
            MessageEvent::MessageUnflagged { .. } => {
                set_flag(conn, schema, message_id, false).await?
            }
        }
        Ok(())
    }
}

async fn set_flag(
    conn: &mut PgConnection,
    schema: &str,
    message_id: &str,
    flagged: bool,
) -> anyhow::Result<()> {
    sqlx::query(&format!(
        "UPDATE {schema}.messages SET flagged = $2 WHERE message_id = $1"
    ))
    .bind(message_id)
    .bind(flagged)
    .execute(conn)
    .await?;
    Ok(())
}
