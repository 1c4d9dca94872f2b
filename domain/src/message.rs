//! The `Message` aggregate: one stream per posted message, holding its moderation state.
//!
//! Messages are their own aggregate so that posting never contends with, or lengthens, the
//! author's stream; the aggregate id is a UUIDv7 chosen by the caller. Flagging is a command
//! on the message, so a moderation decision — with who took it and why — is itself a fact in
//! the log.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::directory::{Directory, DirectoryError};
use crate::limits::{self, MAX_MESSAGE_CHARS};
use crate::registration;

/// What can be asked of a message.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageCommand {
    /// Publish `content` as `author`. Content is kept exactly as given (it is escaped only
    /// when rendered as HTML); empty content is allowed, as in the original.
    Post {
        author: String,
        content: String,
        posted_at: DateTime<Utc>,
    },
    /// Hide the message from every timeline. Flagging a flagged message changes nothing.
    Flag {
        flagged_at: DateTime<Utc>,
        moderation: Moderation,
    },
    /// Show a flagged message again. Unflagging an unflagged message changes nothing.
    Unflag {
        unflagged_at: DateTime<Utc>,
        moderation: Moderation,
    },
    /// Take the message down for good because its author was forgotten. Removing a removed
    /// message changes nothing.
    Remove { removed_at: DateTime<Utc> },
}

impl MessageCommand {
    /// A stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Post { .. } => "post",
            Self::Flag { .. } => "flag",
            Self::Unflag { .. } => "unflag",
            Self::Remove { .. } => "remove",
        }
    }
}

/// Who took a moderation decision, and why, as recorded with it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Moderation {
    /// Who decided (an administrator's name). Empty: not recorded, as for decisions stored
    /// before version 2.0 of the moderation events.
    pub moderator: String,
    /// Why; may be empty.
    pub reason: String,
}

/// What happened to a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MessageEvent {
    /// Carries the author and time so that timeline projectors need nothing else.
    MessagePosted {
        author: String,
        content: String,
        posted_at: DateTime<Utc>,
    },
    /// Version 2.0 added `moderation`; 1.0 payloads are upcast (see [`crate::upcasting`]).
    MessageFlagged {
        flagged_at: DateTime<Utc>,
        moderation: Moderation,
    },
    /// Version 2.0 added `moderation`, as for `MessageFlagged`.
    MessageUnflagged {
        unflagged_at: DateTime<Utc>,
        moderation: Moderation,
    },
    /// The author was forgotten: the views drop the message. Its content, sealed with the
    /// author's deleted key, can no longer be read anyway; this tells the views to let go of
    /// the copy they made while it could.
    MessageRemoved { removed_at: DateTime<Utc> },
}

impl MessageEvent {
    /// The current payload version of `MessagePosted`.
    pub const POSTED_VERSION: &'static str = "1.0";
    /// The current payload version of `MessageFlagged` and `MessageUnflagged`.
    pub const MODERATION_VERSION: &'static str = "2.0";
    /// The current payload version of `MessageRemoved`.
    pub const REMOVED_VERSION: &'static str = "1.0";
}

impl DomainEvent for MessageEvent {
    fn event_type(&self) -> String {
        match self {
            Self::MessagePosted { .. } => "MessagePosted",
            Self::MessageFlagged { .. } => "MessageFlagged",
            Self::MessageUnflagged { .. } => "MessageUnflagged",
            Self::MessageRemoved { .. } => "MessageRemoved",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        match self {
            Self::MessagePosted { .. } => Self::POSTED_VERSION,
            Self::MessageFlagged { .. } | Self::MessageUnflagged { .. } => Self::MODERATION_VERSION,
            Self::MessageRemoved { .. } => Self::REMOVED_VERSION,
        }
        .to_owned()
    }
}

/// Why a message command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The author has not registered.
    #[error("unknown user {0:?}")]
    UnknownAuthor(String),
    /// This message id was already used for another post.
    #[error("the message was already posted")]
    AlreadyPosted,
    /// No message was posted under this id.
    #[error("no such message")]
    UnknownMessage,
    /// PostgreSQL cannot store the NUL character in text.
    #[error("A message cannot contain the NUL character")]
    UnstorableContent,
    /// New messages are limited in length (see [`crate::limits`]); checked by the front
    /// doors with [`check_new_content`], not by the aggregate, which also takes history.
    #[error("A message can have at most {MAX_MESSAGE_CHARS} characters")]
    ContentTooLong,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

/// The state a message's commands are decided on.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    posted: bool,
    flagged: bool,
    /// Absent from snapshots taken before removal existed.
    #[serde(default)]
    removed: bool,
}

impl Aggregate for Message {
    const TYPE: &'static str = "message";
    type Command = MessageCommand;
    type Event = MessageEvent;
    type Error = MessageError;
    type Services = Directory;

    async fn handle(
        &mut self,
        command: MessageCommand,
        directory: &Directory,
        sink: &EventSink<Self>,
    ) -> Result<(), MessageError> {
        let event = match command {
            MessageCommand::Post {
                author,
                content,
                posted_at,
            } => {
                if self.posted {
                    return Err(MessageError::AlreadyPosted);
                }
                if !registration::is_storable(&content) {
                    return Err(MessageError::UnstorableContent);
                }
                if !directory.is_registered(&author).await? {
                    return Err(MessageError::UnknownAuthor(author));
                }
                MessageEvent::MessagePosted {
                    author,
                    content,
                    posted_at,
                }
            }
            MessageCommand::Flag {
                flagged_at,
                moderation,
            } => {
                if !self.posted || self.removed {
                    return Err(MessageError::UnknownMessage);
                }
                if self.flagged {
                    return Ok(());
                }
                MessageEvent::MessageFlagged {
                    flagged_at,
                    moderation: storable(moderation)?,
                }
            }
            MessageCommand::Unflag {
                unflagged_at,
                moderation,
            } => {
                if !self.posted || self.removed {
                    return Err(MessageError::UnknownMessage);
                }
                if !self.flagged {
                    return Ok(());
                }
                MessageEvent::MessageUnflagged {
                    unflagged_at,
                    moderation: storable(moderation)?,
                }
            }
            MessageCommand::Remove { removed_at } => {
                if !self.posted {
                    return Err(MessageError::UnknownMessage);
                }
                if self.removed {
                    return Ok(());
                }
                MessageEvent::MessageRemoved { removed_at }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: MessageEvent) {
        match event {
            MessageEvent::MessagePosted { .. } => self.posted = true,
            MessageEvent::MessageFlagged { .. } => self.flagged = true,
            MessageEvent::MessageUnflagged { .. } => self.flagged = false,
            MessageEvent::MessageRemoved { .. } => self.removed = true,
        }
    }
}

/// Checks the content of a message someone is posting now against the length limit.
pub fn check_new_content(content: &str) -> Result<(), MessageError> {
    if limits::exceeds(content, MAX_MESSAGE_CHARS) {
        Err(MessageError::ContentTooLong)
    } else {
        Ok(())
    }
}

/// `moderation`, if PostgreSQL can store its texts.
fn storable(moderation: Moderation) -> Result<Moderation, MessageError> {
    if registration::is_storable(&moderation.moderator)
        && registration::is_storable(&moderation.reason)
    {
        Ok(moderation)
    } else {
        Err(MessageError::UnstorableContent)
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::testing::FakeDirectory;

    fn framework() -> TestFramework<Message> {
        TestFramework::with(FakeDirectory::with(["alice"]) as Directory)
    }

    #[test]
    fn new_content_is_limited_in_characters() {
        assert_eq!(check_new_content(&"€".repeat(MAX_MESSAGE_CHARS)), Ok(()));
        assert_eq!(
            check_new_content(&"x".repeat(MAX_MESSAGE_CHARS + 1)),
            Err(MessageError::ContentTooLong)
        );
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
    }

    fn posted() -> MessageEvent {
        MessageEvent::MessagePosted {
            author: "alice".into(),
            content: "<b>Blub!</b> æøå".into(),
            posted_at: at(),
        }
    }

    fn post(author: &str) -> MessageCommand {
        MessageCommand::Post {
            author: author.into(),
            content: "<b>Blub!</b> æøå".into(),
            posted_at: at(),
        }
    }

    #[test]
    fn a_registered_author_posts_raw_content() {
        framework()
            .given_no_previous_events()
            .when(post("alice"))
            .then_expect_events(vec![posted()]);
    }

    #[test]
    fn an_unknown_author_cannot_post() {
        framework()
            .given_no_previous_events()
            .when(post("mallory"))
            .then_expect_error(MessageError::UnknownAuthor("mallory".into()));
    }

    #[test]
    fn content_postgres_cannot_store_is_refused() {
        framework()
            .given_no_previous_events()
            .when(MessageCommand::Post {
                author: "alice".into(),
                content: "nul\0byte".into(),
                posted_at: at(),
            })
            .then_expect_error(MessageError::UnstorableContent);
    }

    #[test]
    fn a_message_id_is_posted_once() {
        framework()
            .given(vec![posted()])
            .when(post("alice"))
            .then_expect_error(MessageError::AlreadyPosted);
    }

    fn moderation() -> Moderation {
        Moderation {
            moderator: "admin".into(),
            reason: "spam".into(),
        }
    }

    fn flag() -> MessageCommand {
        MessageCommand::Flag {
            flagged_at: at(),
            moderation: moderation(),
        }
    }

    fn unflag() -> MessageCommand {
        MessageCommand::Unflag {
            unflagged_at: at(),
            moderation: moderation(),
        }
    }

    #[test]
    fn a_removed_message_is_removed_once_and_takes_no_more_moderation() {
        let removed = MessageEvent::MessageRemoved { removed_at: at() };
        let remove = MessageCommand::Remove { removed_at: at() };
        framework()
            .given(vec![posted()])
            .when(remove.clone())
            .then_expect_events(vec![removed.clone()]);
        framework()
            .given(vec![posted(), removed.clone()])
            .when(remove.clone())
            .then_expect_events(vec![]);
        framework()
            .given(vec![posted(), removed])
            .when(flag())
            .then_expect_error(MessageError::UnknownMessage);
        framework()
            .given_no_previous_events()
            .when(remove)
            .then_expect_error(MessageError::UnknownMessage);
    }

    fn flagged() -> MessageEvent {
        MessageEvent::MessageFlagged {
            flagged_at: at(),
            moderation: moderation(),
        }
    }

    #[test]
    fn flagging_is_recorded_once_with_who_and_why_and_can_be_undone() {
        framework()
            .given(vec![posted()])
            .when(flag())
            .then_expect_events(vec![flagged()]);
        framework()
            .given(vec![posted(), flagged()])
            .when(flag())
            .then_expect_events(vec![]);
        framework()
            .given(vec![posted(), flagged()])
            .when(unflag())
            .then_expect_events(vec![MessageEvent::MessageUnflagged {
                unflagged_at: at(),
                moderation: moderation(),
            }]);
        framework()
            .given(vec![posted()])
            .when(unflag())
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_unknown_message_cannot_be_flagged() {
        framework()
            .given_no_previous_events()
            .when(flag())
            .then_expect_error(MessageError::UnknownMessage);
    }

    #[test]
    fn message_events_keep_their_wire_format() {
        assert_eq!(
            serde_json::to_value(posted()).unwrap(),
            serde_json::json!({"MessagePosted": {
                "author": "alice",
                "content": "<b>Blub!</b> æøå",
                "posted_at": "2026-11-25T12:00:00Z"
            }})
        );
        assert_eq!(posted().event_type(), "MessagePosted");
        assert_eq!(posted().event_version(), "1.0");
        assert_eq!(
            serde_json::to_value(flagged()).unwrap(),
            serde_json::json!({"MessageFlagged": {
                "flagged_at": "2026-11-25T12:00:00Z",
                "moderation": {"moderator": "admin", "reason": "spam"}
            }})
        );
        assert_eq!(flagged().event_version(), "2.0");
    }
}
