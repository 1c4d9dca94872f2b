//! Set-based projection: the views built one event per batch, in small batches, in one batch
//! of the whole log, and with every batch applied twice are the same tables — over a random
//! log of registrations, posts, flags and unflags, follows (of users already followed, too),
//! unfollows, re-follows, password upgrades and changes, email changes, private messages both
//! ways, read marks, blocks and unblocks, and people forgotten with their messages removed.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::persist::EventUpcaster;
use domain::{ConversationEvent, MessageEvent, Moderation, PasswordHash, UserEvent};
use projections::maintenance;
use projections::{Projection, Projector, ProjectorSettings, StoredEvent, ViewChange};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use test_support::database::TestDatabase;
use test_support::views::{Altered, BatchApplier};

/// A log long enough for every kind of event to meet every other inside one batch.
const EVENTS: usize = 800;
/// Few users, so that each pair is followed, unfollowed and followed again many times.
const USERS: usize = 6;
/// Flags are about the newest messages, so that one message meets several in a batch.
const MODERATED: usize = 10;

/// Writes a random, domain-shaped log of `EVENTS` events, in transactions of a few events.
async fn write_random_log(pool: &PgPool, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut log = RandomLog::default();
    let mut written = 0;
    while written < EVENTS {
        let mut tx = pool.begin().await.unwrap();
        for _ in 0..rng.random_range(1..20) {
            log.append_next(&mut tx, &mut rng).await;
            written += 1;
        }
        tx.commit().await.unwrap();
    }
}

/// What has been written so far, so that every event is one the domain could have written:
/// users act only once registered, flags are about posted messages.
#[derive(Default)]
struct RandomLog {
    /// The users who may act: registered and not forgotten.
    users: Vec<String>,
    /// How many have registered, forgotten ones included (names are never reused).
    registered: usize,
    messages: Vec<String>,
    /// Who posted each message.
    authors: HashMap<String, String>,
    /// Private messages sent so far in each conversation.
    conversation_lengths: HashMap<String, u64>,
    /// How far each reader has read each conversation.
    read_marks: HashMap<(String, String), u64>,
    /// The last sequence of each stream.
    sequences: HashMap<(&'static str, String), i64>,
}

impl RandomLog {
    async fn append_next(&mut self, conn: &mut PgConnection, rng: &mut StdRng) {
        let at = Utc.timestamp_opt(1_800_000_000, 0).unwrap()
            + chrono::Duration::seconds(rng.random_range(0..3_000));
        let choice = rng.random_range(0..100);
        if self.users.len() < 2 || (choice < 5 && self.users.len() < USERS) {
            let username = format!("user {}", self.registered);
            self.registered += 1;
            self.users.push(username.clone());
            let registered = UserEvent::UserRegistered {
                username: username.clone(),
                email: format!("{username}@example.org"),
                password_hash: PasswordHash::new(format!("$argon2id${}", rng.random::<u32>())),
                registered_at: at,
            };
            return self.append_user(conn, &username, &registered).await;
        }
        let user = rng.random_range(0..self.users.len());
        // Anyone but the user (the domain refuses following oneself).
        let other = (user + rng.random_range(1..self.users.len())) % self.users.len();
        let (user, other) = (self.users[user].clone(), self.users[other].clone());
        match choice {
            5..30 => {
                let message_id = format!("message {}", self.authors.len());
                self.messages.push(message_id.clone());
                self.authors.insert(message_id.clone(), user.clone());
                let posted = MessageEvent::MessagePosted {
                    author: user,
                    content: format!("text {}", rng.random::<u16>()),
                    posted_at: at,
                };
                self.append_message(conn, &message_id, &posted).await;
            }
            30..38 if !self.messages.is_empty() => {
                let newest = self.messages.len().saturating_sub(MODERATED)..self.messages.len();
                let message_id = self.messages[rng.random_range(newest)].clone();
                let moderation = Moderation {
                    moderator: "admin".to_owned(),
                    reason: String::new(),
                };
                let decision = if rng.random_bool(0.5) {
                    MessageEvent::MessageFlagged {
                        flagged_at: at,
                        moderation,
                    }
                } else {
                    MessageEvent::MessageUnflagged {
                        unflagged_at: at,
                        moderation,
                    }
                };
                self.append_message(conn, &message_id, &decision).await;
            }
            38..55 => {
                let followed = UserEvent::UserFollowed {
                    followee: other,
                    followed_at: at,
                };
                self.append_user(conn, &user, &followed).await;
            }
            55..68 => {
                let unfollowed = UserEvent::UserUnfollowed {
                    followee: other,
                    unfollowed_at: at,
                };
                self.append_user(conn, &user, &unfollowed).await;
            }
            68..82 => {
                let conversation = domain::conversation_id(&user, &other);
                let length = self
                    .conversation_lengths
                    .entry(conversation.clone())
                    .or_default();
                *length += 1;
                let sent = ConversationEvent::PrivateMessageSent {
                    sender: user,
                    recipient: other,
                    number: *length,
                    content: format!("psst {}", rng.random::<u16>()),
                    sent_at: at,
                };
                self.append_conversation(conn, &conversation, &sent).await;
            }
            82..90 => {
                // Read marks only move forward; the domain writes no other.
                let conversation = domain::conversation_id(&user, &other);
                let length = self.conversation_lengths.get(&conversation).copied();
                let mark = self
                    .read_marks
                    .entry((conversation.clone(), user.clone()))
                    .or_default();
                if let Some(length) = length.filter(|&length| length > *mark) {
                    *mark = rng.random_range(*mark + 1..=length);
                    let read = ConversationEvent::ConversationRead {
                        reader: user,
                        up_to: *mark,
                        read_at: at,
                    };
                    self.append_conversation(conn, &conversation, &read).await;
                }
            }
            90..94 => {
                let blocked = UserEvent::UserBlocked {
                    blocked: other,
                    blocked_at: at,
                };
                self.append_user(conn, &user, &blocked).await;
            }
            94..97 => {
                let unblocked = UserEvent::UserUnblocked {
                    unblocked: other,
                    unblocked_at: at,
                };
                self.append_user(conn, &user, &unblocked).await;
            }
            97 => {
                let upgraded = UserEvent::PasswordHashUpgraded {
                    password_hash: PasswordHash::new(format!("$argon2id${}", rng.random::<u32>())),
                    upgraded_at: at,
                };
                self.append_user(conn, &user, &upgraded).await;
            }
            98 => {
                let changed = if rng.random_bool(0.5) {
                    UserEvent::EmailChanged {
                        email: format!("{user}.{}@example.org", rng.random::<u16>()),
                        changed_at: at,
                    }
                } else {
                    UserEvent::PasswordChanged {
                        password_hash: PasswordHash::new(format!(
                            "$argon2id${}",
                            rng.random::<u32>()
                        )),
                        changed_at: at,
                    }
                };
                self.append_user(conn, &user, &changed).await;
            }
            _ => self.forget(conn, user, at).await,
        }
    }

    /// `user` forgotten as the command side does it: the forgetting, then a removal for each
    /// of their messages and a forgetting in each of their conversations; they act no more.
    async fn forget(&mut self, conn: &mut PgConnection, user: String, at: DateTime<Utc>) {
        self.append_user(conn, &user, &UserEvent::UserForgotten { forgotten_at: at })
            .await;
        self.users.retain(|active| *active != user);
        let theirs: Vec<String> = self
            .messages
            .iter()
            .filter(|message| self.authors[*message] == user)
            .cloned()
            .collect();
        self.messages
            .retain(|message| self.authors[message] != user);
        for message_id in theirs {
            let removed = MessageEvent::MessageRemoved { removed_at: at };
            self.append_message(conn, &message_id, &removed).await;
        }
        let conversations: Vec<String> = self
            .conversation_lengths
            .keys()
            .filter(|conversation| domain::partner_in(conversation, &user).is_some())
            .cloned()
            .collect();
        for conversation in conversations {
            let forgotten = ConversationEvent::ParticipantForgotten {
                participant: user.clone(),
                forgotten_at: at,
            };
            self.append_conversation(conn, &conversation, &forgotten)
                .await;
        }
    }

    async fn append_user(&mut self, conn: &mut PgConnection, username: &str, event: &UserEvent) {
        let payload = serde_json::to_value(event).unwrap();
        self.append(conn, "user", username, UserEvent::VERSION, payload)
            .await;
    }

    async fn append_message(
        &mut self,
        conn: &mut PgConnection,
        message_id: &str,
        event: &MessageEvent,
    ) {
        let version = match event {
            MessageEvent::MessagePosted { .. } => MessageEvent::POSTED_VERSION,
            MessageEvent::MessageRemoved { .. } => MessageEvent::REMOVED_VERSION,
            _ => MessageEvent::MODERATION_VERSION,
        };
        let payload = serde_json::to_value(event).unwrap();
        self.append(conn, "message", message_id, version, payload)
            .await;
    }

    async fn append_conversation(
        &mut self,
        conn: &mut PgConnection,
        conversation_id: &str,
        event: &ConversationEvent,
    ) {
        let payload = serde_json::to_value(event).unwrap();
        self.append(
            conn,
            "conversation",
            conversation_id,
            ConversationEvent::VERSION,
            payload,
        )
        .await;
    }

    async fn append(
        &mut self,
        conn: &mut PgConnection,
        aggregate_type: &'static str,
        aggregate_id: &str,
        event_version: &str,
        payload: Value,
    ) {
        // Serde tags each payload with its variant's name, which is the event type.
        let event_type = payload
            .as_object()
            .and_then(|tagged| tagged.keys().next())
            .expect("an externally tagged event")
            .clone();
        let sequence = self
            .sequences
            .entry((aggregate_type, aggregate_id.to_owned()))
            .or_default();
        *sequence += 1;
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                 event_version, payload, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6, '{}')",
        )
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(*sequence)
        .bind(event_type)
        .bind(event_version)
        .bind(payload)
        .execute(conn)
        .await
        .unwrap();
    }
}

fn in_batches_of(batch_size: i64) -> ProjectorSettings {
    ProjectorSettings {
        batch_size,
        ..ProjectorSettings::default()
    }
}

/// Builds the active version of every projection from the log.
async fn build_active_versions(
    pool: &PgPool,
    projections: Vec<Arc<dyn Projection>>,
    batch_size: i64,
) {
    for projection in projections {
        let projector = Projector::new(pool.clone(), projection, in_batches_of(batch_size));
        projector.prepare().await.unwrap();
        projector.catch_up().await.unwrap();
    }
}

/// Rebuilds every projection in batches of `batch_size` and asserts that it equals the active
/// version, row for row.
async fn assert_a_rebuild_in_batches_of(pool: &PgPool, batch_size: i64) {
    for projection in projections::all() {
        let comparison = maintenance::verify(pool, &projection, in_batches_of(batch_size))
            .await
            .unwrap();
        assert!(
            comparison.is_equal(),
            "{} built in batches of {batch_size} differs: {:#?}",
            projection.name(),
            comparison.tables
        );
    }
}

#[tokio::test]
async fn views_built_one_event_at_a_time_equal_views_built_in_batches() {
    let db = TestDatabase::create().await;
    write_random_log(&db.pool, 6).await;
    build_active_versions(&db.pool, projections::all(), 1).await;
    // Small batches put boundaries everywhere; one batch of the whole log puts every event
    // of a pair or a message in the same batch.
    for batch_size in [7, 10_000] {
        assert_a_rebuild_in_batches_of(&db.pool, batch_size).await;
    }
}

/// Runs every batch's statements twice over.
struct Twice;

impl BatchApplier for Twice {
    fn plan(
        &self,
        real: &dyn Projection,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>> {
        let mut plan = real.plan_batch(schema, events, upcasters)?;
        plan.extend(real.plan_batch(schema, events, upcasters)?);
        Ok(plan)
    }
}

#[tokio::test]
async fn applying_every_batch_twice_equals_applying_it_once() {
    let db = TestDatabase::create().await;
    write_random_log(&db.pool, 7).await;
    let twice = projections::all()
        .into_iter()
        .map(|real| {
            Arc::new(Altered {
                real,
                applier: Twice,
            }) as Arc<dyn Projection>
        })
        .collect();
    build_active_versions(&db.pool, twice, 7).await;
    assert_a_rebuild_in_batches_of(&db.pool, 10_000).await;
}
