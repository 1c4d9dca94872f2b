//! The timeline projection: messages, shaped for the three timelines.
//!
//! One table, `messages` (in schema `timeline_v<version>`), newest first by `pub_date`
//! (Unix seconds, as the original stores it) with ties broken by log position, newest
//! written first. Flagged messages stay in the table but out of the partial indexes every
//! timeline reads, so unflagging brings them back without a rebuild.
//!
//! A message whose author was forgotten is removed (`MessageRemoved`): its row is deleted,
//! and with it the view's copy of the text. A post read after its author's key was deleted
//! (in a rebuild, or one that raced the forgetting) is not inserted at all.
//!
//! A batch is reduced in memory to its new messages, each moderated message's final flag
//! and the removed messages, then written with one insert, one update and one delete (each
//! only where the batch has any).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use database::event_log::StoredEvent;
use database::keyring::FORGOTTEN_MARK;
use domain::{Message, MessageEvent};

use crate::log::Decode as _;
use crate::projection::{Projection, ViewChange, CLAIM_HELD};

/// Messages, from the `message` aggregate's events.
pub struct Timeline;

impl Projection for Timeline {
    fn name(&self) -> &'static str {
        "timeline"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_type(&self) -> &'static str {
        "message"
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
             );"
        )
    }

    fn create_indexes_sql(&self, schema: &str) -> String {
        format!(
            "-- The public timeline.
             CREATE INDEX IF NOT EXISTS messages_public
                 ON {schema}.messages (pub_date DESC, position DESC) WHERE NOT flagged;
             -- One author's timeline, and each followee's slice of \"my\" timeline.
             CREATE INDEX IF NOT EXISTS messages_by_author
                 ON {schema}.messages (author, pub_date DESC, position DESC) WHERE NOT flagged;"
        )
    }

    fn plan_batch(
        &self,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>> {
        let changes = MessageChanges::of(events, upcasters)?;
        let mut plan = Vec::new();
        if !changes.posted.message_ids.is_empty() {
            let posted = &changes.posted;
            plan.push(
                ViewChange::new(format!(
                    "INSERT INTO {schema}.messages \
                         (message_id, author, content, pub_date, posted_at, position) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], \
                                          $5::timestamptz[], $6::bigint[]) \
                     WHERE {CLAIM_HELD} \
                     ON CONFLICT (message_id) DO NOTHING"
                ))
                .bind(&posted.message_ids)
                .bind(&posted.authors)
                .bind(&posted.contents)
                .bind(&posted.pub_dates)
                .bind(&posted.posted_at)
                .bind(&posted.positions),
            );
        }
        if !changes.flags.is_empty() {
            // After the insert: a message's flags come after its post in the log (same
            // stream, later sequence), so a flag may be about a message of this very batch.
            let (message_ids, flagged): (Vec<&str>, Vec<bool>) = changes
                .flags
                .iter()
                .map(|(message_id, &flagged)| (message_id.as_str(), flagged))
                .unzip();
            plan.push(
                ViewChange::new(format!(
                    "UPDATE {schema}.messages AS m SET flagged = f.flagged \
                     FROM UNNEST($1::text[], $2::boolean[]) AS f(message_id, flagged) \
                     WHERE m.message_id = f.message_id AND {CLAIM_HELD}"
                ))
                .bind(message_ids)
                .bind(flagged),
            );
        }
        if !changes.removed.is_empty() {
            // Last: a removal ends its message's stream, so it may follow a post or a flag
            // of this very batch.
            plan.push(
                ViewChange::new(format!(
                    "DELETE FROM {schema}.messages WHERE message_id = ANY($1) AND {CLAIM_HELD}"
                ))
                .bind(changes.removed),
            );
        }
        Ok(plan)
    }
}

/// What a batch does to `messages`, reduced in memory to one row per message.
#[derive(Debug, Default)]
struct MessageChanges {
    posted: PostedColumns,
    /// Whether each moderated message ends up flagged: its last decision in the batch, the
    /// only one sequential application would leave standing.
    flags: BTreeMap<String, bool>,
    /// The messages removed.
    removed: Vec<String>,
}

/// New messages, column by column (the arrays the insert unnests), each message once: the
/// first post of a message wins, as it would with one insert per event.
#[derive(Debug, Default)]
struct PostedColumns {
    message_ids: Vec<String>,
    authors: Vec<String>,
    contents: Vec<String>,
    pub_dates: Vec<i64>,
    posted_at: Vec<DateTime<Utc>>,
    positions: Vec<i64>,
}

impl MessageChanges {
    fn of(events: &[StoredEvent], upcasters: &[Box<dyn EventUpcaster>]) -> anyhow::Result<Self> {
        let mut changes = Self::default();
        let mut seen = HashSet::new();
        for event in events {
            let envelope = event.decode::<Message>(upcasters)?;
            // A forgotten author's post (read in a rebuild, or one that raced the forgetting)
            // leaves nothing in the view: it would be an empty message.
            let forgotten = envelope.metadata.contains_key(FORGOTTEN_MARK);
            let message_id = envelope.aggregate_id;
            match envelope.payload {
                MessageEvent::MessagePosted {
                    author,
                    content,
                    posted_at,
                } => {
                    if !forgotten && seen.insert(message_id.clone()) {
                        let posted = &mut changes.posted;
                        posted.message_ids.push(message_id);
                        posted.authors.push(author);
                        posted.contents.push(content);
                        posted.pub_dates.push(posted_at.timestamp());
                        posted.posted_at.push(posted_at);
                        posted.positions.push(event.position.global_position);
                    }
                }
                MessageEvent::MessageFlagged { .. } => {
                    changes.flags.insert(message_id, true);
                }
                MessageEvent::MessageUnflagged { .. } => {
                    changes.flags.insert(message_id, false);
                }
                MessageEvent::MessageRemoved { .. } => changes.removed.push(message_id),
            }
        }
        Ok(changes)
    }
}
