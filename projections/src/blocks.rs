//! The blocks projection: who has blocked whom from sending them private messages, for the
//! pages that show it. (Whether a message may be sent is decided on the command side, from
//! the event store; this view only shows the state.)
//!
//! One table, `blocks` (in schema `blocks_v<version>`), one row per current block. A batch is
//! reduced to each pair's last word — a block or an unblock, both from the blocker's stream,
//! so in order — then written with one delete and one insert.

use std::collections::BTreeMap;

use async_trait::async_trait;
use cqrs_es::persist::EventUpcaster;
use database::event_log::StoredEvent;
use domain::{User, UserEvent};
use sqlx::PgConnection;

use crate::log::Decode as _;
use crate::projection::Projection;

/// Current blocks, from the `user` aggregate's events.
pub struct Blocks;

#[async_trait]
impl Projection for Blocks {
    fn name(&self) -> &'static str {
        "blocks"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_type(&self) -> &'static str {
        "user"
    }

    fn create_tables_sql(&self, schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.blocks (
                 blocker text NOT NULL,
                 blocked text NOT NULL,
                 PRIMARY KEY (blocker, blocked)
             );"
        )
    }

    fn create_indexes_sql(&self, _schema: &str) -> String {
        // The primary key answers the one question asked: does this blocker block that user.
        String::new()
    }

    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<()> {
        let mut last_word = BTreeMap::new();
        for event in events {
            let envelope = event.decode::<User>(upcasters)?;
            let blocker = envelope.aggregate_id;
            match envelope.payload {
                UserEvent::UserBlocked { blocked, .. } => {
                    last_word.insert((blocker, blocked), true);
                }
                UserEvent::UserUnblocked { unblocked, .. } => {
                    last_word.insert((blocker, unblocked), false);
                }
                _ => {}
            }
        }
        if last_word.is_empty() {
            return Ok(());
        }
        let (mut blockers, mut blocked, mut blocking) = (Vec::new(), Vec::new(), Vec::new());
        for ((blocker, other), &blocks) in &last_word {
            blockers.push(blocker.as_str());
            blocked.push(other.as_str());
            blocking.push(blocks);
        }
        sqlx::query(&format!(
            "WITH last_word AS (
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::boolean[])
                     AS w(blocker, blocked, blocks)
             ), lifted AS (
                 DELETE FROM {schema}.blocks b USING last_word w
                 WHERE b.blocker = w.blocker AND b.blocked = w.blocked AND NOT w.blocks
             )
             INSERT INTO {schema}.blocks (blocker, blocked)
             SELECT blocker, blocked FROM last_word WHERE blocks
             ON CONFLICT DO NOTHING"
        ))
        .bind(blockers)
        .bind(blocked)
        .bind(blocking)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}
