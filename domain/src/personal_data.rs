//! Which fields of the events are personal data, and whose.
//!
//! The log keeps what people wrote and who they are for ever, so what identifies a person
//! beyond their public username is stored sealed with a key of that person's own, and
//! forgetting them deletes the key (crypto-shredding; the sealing itself is the store's
//! business). This module is the domain's half: which fields of each event must be sealed,
//! and with whose key. Usernames, follows, blocks, times and moderation decisions are not
//! personal in this sense: usernames are public, and the rest means nothing without them.
//!
//! The write model decides nothing on personal data (no aggregate keeps an email, a hash or
//! a text in its state), so the command side never needs to open a sealed field.

use cqrs_es::DomainEvent;

use crate::conversation::ConversationEvent;
use crate::message::MessageEvent;
use crate::user::UserEvent;

/// Every event type with personal fields, and their names as serialised in its payload.
/// Event types are unique across the aggregates. An event type not listed has none.
pub const PERSONAL_FIELDS: [(&str, &[&str]); 6] = [
    ("UserRegistered", &["email", "password_hash"]),
    ("PasswordHashUpgraded", &["password_hash"]),
    ("PasswordChanged", &["password_hash"]),
    ("EmailChanged", &["email"]),
    ("MessagePosted", &["content"]),
    ("PrivateMessageSent", &["content"]),
];

/// The personal fields of events of `event_type` (see [`PERSONAL_FIELDS`]).
pub fn personal_fields_of(event_type: &str) -> &'static [&'static str] {
    PERSONAL_FIELDS
        .iter()
        .find(|(name, _)| *name == event_type)
        .map_or(&[], |(_, fields)| fields)
}

/// An event's personal data, as the store must treat it.
pub trait PersonalData: DomainEvent {
    /// The names of the event's personal fields, as serialised in its payload; empty for an
    /// event without any.
    fn personal_fields(&self) -> &'static [&'static str] {
        personal_fields_of(&self.event_type())
    }

    /// The person the fields belong to, whose key seals them: for an event of the stream
    /// `aggregate_id`.
    fn data_subject<'a>(&'a self, aggregate_id: &'a str) -> &'a str;
}

impl PersonalData for UserEvent {
    /// A user's stream is theirs: its id is their username.
    fn data_subject<'a>(&'a self, aggregate_id: &'a str) -> &'a str {
        aggregate_id
    }
}

impl PersonalData for MessageEvent {
    /// A message's text is its author's.
    fn data_subject<'a>(&'a self, aggregate_id: &'a str) -> &'a str {
        match self {
            Self::MessagePosted { author, .. } => author,
            _ => aggregate_id,
        }
    }
}

impl PersonalData for ConversationEvent {
    /// A private message's text is its sender's, in both participants' copies.
    fn data_subject<'a>(&'a self, aggregate_id: &'a str) -> &'a str {
        match self {
            Self::PrivateMessageSent { sender, .. } => sender,
            _ => aggregate_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use serde_json::Value;

    use super::*;
    use crate::registration::PasswordHash;

    /// Every personal field named is a string at the top of the event's serialised payload,
    /// where the store looks for it.
    fn assert_fields_are_strings(event: &(impl PersonalData + serde::Serialize)) {
        let payload = serde_json::to_value(event).unwrap();
        let (_, body) = payload.as_object().unwrap().iter().next().unwrap();
        for field in event.personal_fields() {
            assert!(
                matches!(body.get(*field), Some(Value::String(_))),
                "{field} in {payload}"
            );
        }
    }

    #[test]
    fn personal_fields_are_strings_in_the_payload() {
        let now = Utc::now();
        assert_fields_are_strings(&UserEvent::UserRegistered {
            username: "a".into(),
            email: "a@b".into(),
            password_hash: PasswordHash::new("h".into()),
            registered_at: now,
        });
        assert_fields_are_strings(&UserEvent::PasswordChanged {
            password_hash: PasswordHash::new("h".into()),
            changed_at: now,
        });
        assert_fields_are_strings(&UserEvent::EmailChanged {
            email: "a@c".into(),
            changed_at: now,
        });
        assert_fields_are_strings(&MessageEvent::MessagePosted {
            author: "a".into(),
            content: "hi".into(),
            posted_at: now,
        });
        assert_fields_are_strings(&ConversationEvent::PrivateMessageSent {
            sender: "a".into(),
            recipient: "b".into(),
            number: 1,
            content: "hi".into(),
            sent_at: now,
        });
    }

    #[test]
    fn texts_belong_to_who_wrote_them() {
        let now = Utc::now();
        let posted = MessageEvent::MessagePosted {
            author: "alice".into(),
            content: "hi".into(),
            posted_at: now,
        };
        assert_eq!(posted.data_subject("0190-uuid"), "alice");
        let sent = ConversationEvent::PrivateMessageSent {
            sender: "bob".into(),
            recipient: "alice".into(),
            number: 1,
            content: "hi".into(),
            sent_at: now,
        };
        assert_eq!(sent.data_subject("[\"alice\",\"bob\"]"), "bob");
        let forgotten = UserEvent::UserForgotten { forgotten_at: now };
        assert_eq!(forgotten.data_subject("carol"), "carol");
        assert!(forgotten.personal_fields().is_empty());
    }

    #[test]
    fn the_events_with_personal_fields_are_the_listed_ones() {
        let now = Utc::now();
        let changed = UserEvent::EmailChanged {
            email: "a@b".into(),
            changed_at: now,
        };
        assert_eq!(changed.personal_fields(), ["email"]);
        let followed = UserEvent::UserFollowed {
            followee: "b".into(),
            followed_at: now,
        };
        assert!(followed.personal_fields().is_empty());
        assert_eq!(personal_fields_of("NoSuchEvent"), [] as [&str; 0]);
    }
}
