//! The conversations projection: private messages, read marks and each user's inbox.
//!
//! Tables (in schema `conversations_v<version>`):
//! - `private_messages`: every message, keyed by conversation and number (its place in the
//!   conversation), which is also the key a conversation is paged by.
//! - `read_marks`: how far each participant has read each conversation; marks only move
//!   forward.
//! - `inbox`: one row per user and conversation partner — the newest message and how many of
//!   the partner's messages the user has not read — which the inbox lists newest first.
//!
//! - `forgotten_participants`: who was forgotten in which conversation. Their messages there
//!   are kept as `removed` rows with no text (so the other side sees that something was
//!   said, and where), and they have no inbox any more.
//!
//! A batch inserts its messages, raises its read marks, removes forgotten participants'
//! texts, and then recomputes the inbox rows
//! of the conversations it touched from those two tables. Recomputing from the tables,
//! rather than adding to counters, is what makes a batch idempotent and equal to its events
//! applied one by one.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use database::event_log::StoredEvent;
use database::keyring::FORGOTTEN_MARK;
use domain::{Conversation, ConversationEvent};

use crate::log::Decode as _;
use crate::projection::{Projection, ViewChange, CLAIM_HELD};

/// Private messages and inboxes, from the `conversation` aggregate's events.
pub struct Conversations;

impl Projection for Conversations {
    fn name(&self) -> &'static str {
        "conversations"
    }

    /// 2: removed messages, and forgotten participants.
    fn version(&self) -> i32 {
        2
    }

    fn aggregate_type(&self) -> &'static str {
        "conversation"
    }

    fn create_tables_sql(&self, schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.private_messages (
                 conversation_id text        NOT NULL,
                 number          bigint      NOT NULL,
                 sender          text        NOT NULL,
                 recipient       text        NOT NULL,
                 content         text        NOT NULL,
                 sent_at         timestamptz NOT NULL,
                 position        bigint      NOT NULL,
                 removed         boolean     NOT NULL DEFAULT false,
                 PRIMARY KEY (conversation_id, number)
             );
             CREATE TABLE IF NOT EXISTS {schema}.forgotten_participants (
                 conversation_id text NOT NULL,
                 participant     text NOT NULL,
                 PRIMARY KEY (conversation_id, participant)
             );
             CREATE TABLE IF NOT EXISTS {schema}.read_marks (
                 conversation_id text   NOT NULL,
                 reader          text   NOT NULL,
                 up_to           bigint NOT NULL,
                 PRIMARY KEY (conversation_id, reader)
             );
             CREATE TABLE IF NOT EXISTS {schema}.inbox (
                 owner           text        NOT NULL,
                 partner         text        NOT NULL,
                 conversation_id text        NOT NULL,
                 last_number     bigint      NOT NULL,
                 last_sender     text        NOT NULL,
                 last_content    text        NOT NULL,
                 last_removed    boolean     NOT NULL,
                 last_sent_at    timestamptz NOT NULL,
                 last_position   bigint      NOT NULL,
                 read_up_to      bigint      NOT NULL,
                 unread          bigint      NOT NULL,
                 PRIMARY KEY (owner, partner)
             );"
        )
    }

    fn create_indexes_sql(&self, schema: &str) -> String {
        format!(
            "-- A user's inbox, the conversation with the newest message first.
             CREATE INDEX IF NOT EXISTS inbox_by_owner
                 ON {schema}.inbox (owner, last_position DESC);"
        )
    }

    fn plan_batch(
        &self,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>> {
        let changes = ConversationChanges::of(events, upcasters)?;
        let mut plan = Vec::new();
        let sent = &changes.sent;
        if !sent.conversation_ids.is_empty() {
            plan.push(
                ViewChange::new(format!(
                    "INSERT INTO {schema}.private_messages \
                         (conversation_id, number, sender, recipient, content, sent_at, position, \
                          removed) \
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], \
                                          $5::text[], $6::timestamptz[], $7::bigint[], \
                                          $8::boolean[]) \
                     WHERE {CLAIM_HELD} \
                     ON CONFLICT (conversation_id, number) DO NOTHING"
                ))
                .bind(&sent.conversation_ids)
                .bind(&sent.numbers)
                .bind(&sent.senders)
                .bind(&sent.recipients)
                .bind(&sent.contents)
                .bind(&sent.sent_at)
                .bind(&sent.positions)
                .bind(&sent.removed),
            );
        }
        if !changes.read_marks.is_empty() {
            let mut conversation_ids = Vec::new();
            let mut readers = Vec::new();
            let mut marks = Vec::new();
            for ((conversation_id, reader), &up_to) in &changes.read_marks {
                conversation_ids.push(conversation_id.as_str());
                readers.push(reader.as_str());
                marks.push(up_to);
            }
            plan.push(
                ViewChange::new(format!(
                    "INSERT INTO {schema}.read_marks AS r (conversation_id, reader, up_to) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[]) \
                     WHERE {CLAIM_HELD} \
                     ON CONFLICT (conversation_id, reader) \
                     DO UPDATE SET up_to = GREATEST(r.up_to, EXCLUDED.up_to)"
                ))
                .bind(conversation_ids)
                .bind(readers)
                .bind(marks),
            );
        }
        if !changes.forgotten.is_empty() {
            // Before the inbox: its rows copy the newest message's text.
            let (conversation_ids, participants): (Vec<&str>, Vec<&str>) = changes
                .forgotten
                .iter()
                .map(|(conversation_id, participant)| {
                    (conversation_id.as_str(), participant.as_str())
                })
                .unzip();
            plan.push(
                ViewChange::new(format!(
                    "INSERT INTO {schema}.forgotten_participants (conversation_id, participant) \
                     SELECT * FROM UNNEST($1::text[], $2::text[]) WHERE {CLAIM_HELD} \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(conversation_ids.clone())
                .bind(participants.clone()),
            );
            plan.push(
                ViewChange::new(format!(
                    "UPDATE {schema}.private_messages AS m SET content = '', removed = true \
                     FROM UNNEST($1::text[], $2::text[]) AS f(conversation_id, participant) \
                     WHERE m.conversation_id = f.conversation_id AND m.sender = f.participant \
                       AND {CLAIM_HELD}"
                ))
                .bind(conversation_ids.clone())
                .bind(participants.clone()),
            );
            plan.push(
                ViewChange::new(format!(
                    "DELETE FROM {schema}.inbox AS i \
                     USING UNNEST($1::text[], $2::text[]) AS f(conversation_id, participant) \
                     WHERE i.conversation_id = f.conversation_id AND i.owner = f.participant \
                       AND {CLAIM_HELD}"
                ))
                .bind(conversation_ids)
                .bind(participants),
            );
        }
        if !changes.touched.is_empty() {
            let touched: Vec<&str> = changes.touched.iter().map(String::as_str).collect();
            // Each touched conversation's newest message names both participants; each of
            // them not forgotten gets a row with the other as partner. Unread: the partner's
            // messages beyond the owner's read mark.
            plan.push(
                ViewChange::new(format!(
                    "WITH newest AS (
                         SELECT DISTINCT ON (m.conversation_id) m.*
                         FROM {schema}.private_messages m
                         WHERE m.conversation_id = ANY($1::text[])
                         ORDER BY m.conversation_id, m.number DESC
                     ), sides AS (
                         SELECT conversation_id, sender AS owner, recipient AS partner FROM newest
                         UNION ALL
                         SELECT conversation_id, recipient, sender FROM newest
                     )
                     INSERT INTO {schema}.inbox AS i
                         (owner, partner, conversation_id, last_number, last_sender, last_content,
                          last_removed, last_sent_at, last_position, read_up_to, unread)
                     SELECT s.owner, s.partner, s.conversation_id, n.number, n.sender, n.content,
                            n.removed, n.sent_at, n.position, COALESCE(r.up_to, 0),
                            (SELECT count(*) FROM {schema}.private_messages u
                             WHERE u.conversation_id = s.conversation_id AND u.sender = s.partner
                               AND u.number > COALESCE(r.up_to, 0))
                     FROM sides s
                     JOIN newest n ON n.conversation_id = s.conversation_id
                     LEFT JOIN {schema}.read_marks r
                         ON r.conversation_id = s.conversation_id AND r.reader = s.owner
                     WHERE {CLAIM_HELD}
                       AND NOT EXISTS (SELECT 1 FROM {schema}.forgotten_participants f
                                       WHERE f.conversation_id = s.conversation_id
                                         AND f.participant = s.owner)
                     ON CONFLICT (owner, partner) DO UPDATE SET
                         conversation_id = EXCLUDED.conversation_id,
                         last_number = EXCLUDED.last_number,
                         last_sender = EXCLUDED.last_sender,
                         last_content = EXCLUDED.last_content,
                         last_removed = EXCLUDED.last_removed,
                         last_sent_at = EXCLUDED.last_sent_at,
                         last_position = EXCLUDED.last_position,
                         read_up_to = EXCLUDED.read_up_to,
                         unread = EXCLUDED.unread"
                ))
                .bind(touched),
            );
        }
        Ok(plan)
    }
}

/// What a batch does to the conversation tables, reduced in memory.
#[derive(Debug, Default)]
struct ConversationChanges {
    sent: SentColumns,
    /// The highest mark per conversation and reader in the batch: marks only move forward,
    /// so it is the one sequential application would leave standing.
    read_marks: BTreeMap<(String, String), i64>,
    /// The conversations whose inbox rows need recomputing.
    touched: BTreeSet<String>,
    /// Each conversation's participants forgotten in the batch.
    forgotten: BTreeSet<(String, String)>,
}

/// New messages, column by column (the arrays the insert unnests), each once.
#[derive(Debug, Default)]
struct SentColumns {
    conversation_ids: Vec<String>,
    numbers: Vec<i64>,
    senders: Vec<String>,
    recipients: Vec<String>,
    contents: Vec<String>,
    sent_at: Vec<DateTime<Utc>>,
    positions: Vec<i64>,
    /// The sender was forgotten (the text read empty): kept as a removed message.
    removed: Vec<bool>,
}

impl ConversationChanges {
    fn of(events: &[StoredEvent], upcasters: &[Box<dyn EventUpcaster>]) -> anyhow::Result<Self> {
        let mut changes = Self::default();
        let mut seen = HashSet::new();
        for event in events {
            let envelope = event.decode::<Conversation>(upcasters)?;
            let forgotten = envelope.metadata.contains_key(FORGOTTEN_MARK);
            let conversation_id = envelope.aggregate_id;
            match envelope.payload {
                ConversationEvent::PrivateMessageSent {
                    sender,
                    recipient,
                    number,
                    content,
                    sent_at,
                } => {
                    let number = i64::try_from(number)?;
                    if seen.insert((conversation_id.clone(), number)) {
                        let sent = &mut changes.sent;
                        sent.conversation_ids.push(conversation_id.clone());
                        sent.numbers.push(number);
                        sent.senders.push(sender);
                        sent.recipients.push(recipient);
                        sent.contents.push(content);
                        sent.sent_at.push(sent_at);
                        sent.positions.push(event.position.global_position);
                        sent.removed.push(forgotten);
                    }
                }
                ConversationEvent::ConversationRead { reader, up_to, .. } => {
                    let up_to = i64::try_from(up_to)?;
                    let mark = changes
                        .read_marks
                        .entry((conversation_id.clone(), reader))
                        .or_insert(up_to);
                    *mark = (*mark).max(up_to);
                }
                ConversationEvent::ParticipantForgotten { participant, .. } => {
                    changes
                        .forgotten
                        .insert((conversation_id.clone(), participant));
                }
            }
            changes.touched.insert(conversation_id);
        }
        Ok(changes)
    }
}
