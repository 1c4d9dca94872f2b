//! A person's own data, read from the event log rather than the views (which keep only what
//! the pages show): the download on the settings page, and the events the admin tool's
//! `audit` lists.
//!
//! The download is the person's account as they made it — profile, follows, blocks, the
//! messages they posted and the private messages they sent and received — with the personal
//! fields opened. Their password hashes are left out: they identify nothing, and a file
//! that travels by email should not carry them. Texts of a partner who was forgotten are
//! marked removed, without text, as the pages show them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use database::event_log::{self, StoredEvent};
use database::keyring::Keyring;
use database::sealing;
use domain::{
    Conversation, ConversationEvent, Message, MessageEvent, PersonalData, User, UserEvent,
};
use serde::Serialize;
use sqlx::PgPool;

use crate::log::Decode as _;

/// The events of `username`'s streams and of the conversations they are in, in log order,
/// as stored (personal fields sealed).
pub async fn events_of(pool: &PgPool, username: &str) -> Result<Vec<StoredEvent>, sqlx::Error> {
    event_log::events_of_person(pool, username).await
}

/// Whether `event`, one of [`events_of`] for `username`, is something they did or were
/// sent: in a conversation, the partner's read marks are the partner's business.
pub fn concerns(event: &StoredEvent, username: &str) -> bool {
    if event.aggregate_type != Conversation::TYPE {
        return true;
    }
    let Some(fields) = event.payload.get(&event.event_type) else {
        return false;
    };
    ["sender", "recipient", "reader", "participant"]
        .iter()
        .any(|role| fields.get(*role).and_then(|name| name.as_str()) == Some(username))
}

/// Which fields of `event` are personal, and whose (see [`domain::personal_data`]): the
/// domain's answer for the event as stored, sealed or not.
pub fn personal_fields(event: &StoredEvent) -> anyhow::Result<(&'static [&'static str], String)> {
    let mut blank = event.clone();
    sealing::blank_fields(&mut blank.payload);
    let upcasters = domain::upcasting::upcasters();
    let id = event.aggregate_id.as_str();
    Ok(match event.aggregate_type.as_str() {
        User::TYPE => personal(&blank.decode::<User>(&upcasters)?.payload, id),
        Message::TYPE => personal(&blank.decode::<Message>(&upcasters)?.payload, id),
        Conversation::TYPE => personal(&blank.decode::<Conversation>(&upcasters)?.payload, id),
        other => anyhow::bail!("no aggregate type {other:?}"),
    })
}

fn personal(event: &impl PersonalData, aggregate_id: &str) -> (&'static [&'static str], String) {
    (
        event.personal_fields(),
        event.data_subject(aggregate_id).to_owned(),
    )
}

/// Everything `username` may download about themselves.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataExport {
    pub username: String,
    pub email: String,
    pub registered_at: DateTime<Utc>,
    /// When they last chose a new password, if ever.
    pub password_changed_at: Option<DateTime<Utc>>,
    /// Whom they follow now, with since when.
    pub following: BTreeMap<String, DateTime<Utc>>,
    /// Whom they block now.
    pub blocking: BTreeSet<String>,
    /// What they posted, oldest first, flagged ones included.
    pub messages: Vec<PostedMessage>,
    /// Their private messages, sent and received, by partner, oldest first.
    pub private_messages: BTreeMap<String, Vec<PrivateMessageCopy>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostedMessage {
    pub id: String,
    pub content: String,
    pub posted_at: DateTime<Utc>,
    /// Hidden by a moderator.
    pub flagged: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrivateMessageCopy {
    pub from: String,
    pub to: String,
    /// Empty where `removed`.
    pub content: String,
    pub sent_at: DateTime<Utc>,
    /// The sender was forgotten, and their text with them.
    pub removed: bool,
}

/// `username`'s data, from the log, opened with `keys`; `None` if they never registered or
/// were forgotten.
pub async fn data_of(
    pool: &PgPool,
    keys: &Keyring,
    username: &str,
) -> anyhow::Result<Option<DataExport>> {
    let mut events = events_of(pool, username).await?;
    keys.open_events(&mut events).await?;
    fold(username, &events)
}

/// Folds `username`'s opened events into their data.
fn fold(username: &str, events: &[StoredEvent]) -> anyhow::Result<Option<DataExport>> {
    let upcasters = domain::upcasting::upcasters();
    let mut data: Option<DataExport> = None;
    let mut messages: BTreeMap<String, PostedMessage> = BTreeMap::new();
    let mut forgotten_partners = BTreeSet::new();
    for event in events {
        match event.aggregate_type.as_str() {
            User::TYPE => {
                let payload = event.decode::<User>(&upcasters)?.payload;
                if let UserEvent::UserRegistered {
                    username,
                    email,
                    registered_at,
                    ..
                } = payload
                {
                    data = Some(DataExport {
                        username,
                        email,
                        registered_at,
                        password_changed_at: None,
                        following: BTreeMap::new(),
                        blocking: BTreeSet::new(),
                        messages: Vec::new(),
                        private_messages: BTreeMap::new(),
                    });
                    continue;
                }
                let Some(data) = data.as_mut() else { continue };
                match payload {
                    UserEvent::UserForgotten { .. } => return Ok(None),
                    UserEvent::EmailChanged { email, .. } => data.email = email,
                    UserEvent::PasswordChanged { changed_at, .. } => {
                        data.password_changed_at = Some(changed_at);
                    }
                    UserEvent::UserFollowed {
                        followee,
                        followed_at,
                    } => {
                        data.following.insert(followee, followed_at);
                    }
                    UserEvent::UserUnfollowed { followee, .. } => {
                        data.following.remove(&followee);
                    }
                    UserEvent::UserBlocked { blocked, .. } => {
                        data.blocking.insert(blocked);
                    }
                    UserEvent::UserUnblocked { unblocked, .. } => {
                        data.blocking.remove(&unblocked);
                    }
                    UserEvent::UserRegistered { .. } | UserEvent::PasswordHashUpgraded { .. } => {}
                }
            }
            Message::TYPE => {
                let envelope = event.decode::<Message>(&upcasters)?;
                let id = envelope.aggregate_id;
                match envelope.payload {
                    MessageEvent::MessagePosted {
                        content, posted_at, ..
                    } => {
                        let posted = PostedMessage {
                            id: id.clone(),
                            content,
                            posted_at,
                            flagged: false,
                        };
                        messages.insert(id, posted);
                    }
                    MessageEvent::MessageFlagged { .. } | MessageEvent::MessageUnflagged { .. } => {
                        if let Some(message) = messages.get_mut(&id) {
                            message.flagged =
                                matches!(envelope.payload, MessageEvent::MessageFlagged { .. });
                        }
                    }
                    MessageEvent::MessageRemoved { .. } => {
                        messages.remove(&id);
                    }
                }
            }
            Conversation::TYPE => {
                let envelope = event.decode::<Conversation>(&upcasters)?;
                let Some(data) = data.as_mut() else { continue };
                match envelope.payload {
                    ConversationEvent::PrivateMessageSent {
                        sender,
                        recipient,
                        content,
                        sent_at,
                        ..
                    } => {
                        let partner = if sender == username {
                            recipient.clone()
                        } else {
                            sender.clone()
                        };
                        data.private_messages.entry(partner).or_default().push(
                            PrivateMessageCopy {
                                from: sender,
                                to: recipient,
                                content,
                                sent_at,
                                removed: false,
                            },
                        );
                    }
                    ConversationEvent::ParticipantForgotten { participant, .. } => {
                        forgotten_partners.insert(participant);
                    }
                    ConversationEvent::ConversationRead { .. } => {}
                }
            }
            _ => {}
        }
    }
    let Some(mut data) = data else {
        return Ok(None);
    };
    let mut messages: Vec<PostedMessage> = messages.into_values().collect();
    messages.sort_by_key(|message| message.posted_at);
    data.messages = messages;
    for partner in &forgotten_partners {
        for copy in data.private_messages.get_mut(partner).into_iter().flatten() {
            if copy.from == *partner {
                copy.content.clear();
                copy.removed = true;
            }
        }
    }
    Ok(Some(data))
}
