//! The `Conversation` aggregate: the private messages between two users, and how far each of
//! them has read.
//!
//! One stream per pair of users, whatever the direction, so its messages have one order that
//! both parties see, and each message gets its number in it (1, 2, …): the read marks and the
//! views' paging count on it. The stream's id is [`conversation_id`] of the two names. Who
//! may send is decided with the [`ContactBook`](crate::contacts::ContactBook) port and the
//! configured [`ChatPolicy`] ([`may_write`]). A block cuts both ways: neither the blocked user
//! nor the one who blocked them may write in their conversation until the block is lifted.
//!
//! All chat input is new (there is no history to import), so the length limit is a rule of
//! the aggregate itself, unlike the public messages' (see [`crate::limits`]).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::contacts::{ChatPolicy, ChatServices, Standing};
use crate::directory::DirectoryError;
use crate::limits::{self, MAX_MESSAGE_CHARS};
use crate::registration;

/// The stream id of the conversation between `a` and `b`, the same for either order: the
/// two names, sorted, as a JSON array — unambiguous for any names, and readable in the log.
pub fn conversation_id(a: &str, b: &str) -> String {
    let pair = if a <= b { [a, b] } else { [b, a] };
    serde_json::to_string(&pair).expect("two strings serialise")
}

/// The other user of the conversation `conversation_id` (see [`conversation_id`]), seen from
/// `user`; `None` if `user` is not in it or the id is not a conversation's.
pub fn partner_in(conversation_id: &str, user: &str) -> Option<String> {
    let [a, b]: [String; 2] = serde_json::from_str(conversation_id).ok()?;
    if a == user {
        Some(b)
    } else if b == user {
        Some(a)
    } else {
        None
    }
}

/// What can be asked of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub enum ConversationCommand {
    /// `sender` sends `content` to `recipient`.
    Send {
        sender: String,
        recipient: String,
        content: String,
        sent_at: DateTime<Utc>,
    },
    /// `reader` has read every message up to number `up_to`. Read marks only move forward:
    /// an older mark changes nothing.
    MarkRead {
        reader: String,
        up_to: u64,
        read_at: DateTime<Utc>,
    },
    /// `participant` was forgotten: their messages here are removed for the other side too.
    /// Forgetting a participant already forgotten changes nothing.
    ForgetParticipant {
        participant: String,
        forgotten_at: DateTime<Utc>,
    },
}

impl ConversationCommand {
    /// A stable name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Send { .. } => "send_private_message",
            Self::MarkRead { .. } => "mark_conversation_read",
            Self::ForgetParticipant { .. } => "forget_participant",
        }
    }
}

/// What happened in a conversation. Stored names and versions never change; a changed
/// payload gets a new version and an upcaster (see [`crate::upcasting`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConversationEvent {
    PrivateMessageSent {
        sender: String,
        recipient: String,
        /// The message's place in the conversation, from 1.
        number: u64,
        content: String,
        sent_at: DateTime<Utc>,
    },
    ConversationRead {
        reader: String,
        up_to: u64,
        read_at: DateTime<Utc>,
    },
    /// `participant`'s messages in this conversation are removed: their texts were sealed
    /// with the participant's deleted key, and the views drop the copies they hold.
    ParticipantForgotten {
        participant: String,
        forgotten_at: DateTime<Utc>,
    },
}

impl ConversationEvent {
    /// The current payload version of every conversation event.
    pub const VERSION: &'static str = "1.0";
}

impl DomainEvent for ConversationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PrivateMessageSent { .. } => "PrivateMessageSent",
            Self::ConversationRead { .. } => "ConversationRead",
            Self::ParticipantForgotten { .. } => "ParticipantForgotten",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        Self::VERSION.to_owned()
    }
}

/// Why a conversation command was refused.
///
/// `Blocked` and `NotConnected` are told apart here, for tests and logs; a front door should
/// answer both alike, so that nobody learns from an error that they were blocked. Whoever
/// blocked is told so (`SenderBlocksRecipient`): it is their own doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversationError {
    /// The sender has not registered.
    #[error("unknown user")]
    SenderNotRegistered,
    /// The recipient has not registered.
    #[error("unknown user {0:?}")]
    UnknownRecipient(String),
    #[error("You cannot send a message to yourself")]
    CannotMessageSelf,
    /// The policy does not let these two talk (neither follows the other).
    #[error("You cannot send messages to this user")]
    NotConnected,
    /// The recipient has blocked the sender.
    #[error("You cannot send messages to this user")]
    Blocked,
    /// The sender has blocked the recipient, who cannot answer: a block cuts both ways.
    #[error("You have blocked this user; unblock them to write to them")]
    SenderBlocksRecipient,
    #[error("You have to write a message")]
    EmptyMessage,
    /// PostgreSQL cannot store the NUL character in text.
    #[error("A message cannot contain the NUL character")]
    UnstorableContent,
    #[error("A message can have at most {MAX_MESSAGE_CHARS} characters")]
    ContentTooLong,
    /// The command names a pair of users other than this stream's.
    #[error("the command belongs to another conversation")]
    WrongConversation,
    /// The reader is not one of the two users of this conversation.
    #[error("no such conversation")]
    NotAParticipant,
    /// A read mark beyond the last message.
    #[error("no such message")]
    UnknownMessage,
    #[error(transparent)]
    Contacts(#[from] DirectoryError),
}

/// The state a conversation's commands are decided on.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// The two users, sorted; none before the first message.
    participants: Option<[String; 2]>,
    /// How many messages have been sent, which is also the last one's number.
    messages: u64,
    /// Each participant's read mark; absent means nothing read.
    read_up_to: BTreeMap<String, u64>,
    /// Participants who were forgotten. Absent from snapshots taken before forgetting existed.
    #[serde(default)]
    forgotten: BTreeSet<String>,
}

impl Conversation {
    fn is_participant(&self, user: &str) -> bool {
        self.participants
            .as_ref()
            .is_some_and(|pair| pair.iter().any(|participant| participant == user))
    }

    /// Whether the pair `a`, `b` may write to this stream: any pair to a new one, else the
    /// stream's own.
    fn belongs_here(&self, a: &str, b: &str) -> bool {
        self.participants.is_none() || (self.is_participant(a) && self.is_participant(b))
    }
}

/// Whether a sender who stands as `standing` to a recipient may write to them under
/// `policy`, registration aside: not if either blocks the other (the sender's own block named
/// first: it is the one they can lift), else as the policy says. The pages ask it too, to
/// offer a message box only where a message would be taken.
pub fn may_write(standing: &Standing, policy: ChatPolicy) -> Result<(), ConversationError> {
    if standing.sender_blocks_recipient {
        Err(ConversationError::SenderBlocksRecipient)
    } else if standing.recipient_blocks_sender {
        Err(ConversationError::Blocked)
    } else if !policy.allows(standing) {
        Err(ConversationError::NotConnected)
    } else {
        Ok(())
    }
}

/// Content a message may have.
fn check_content(content: &str) -> Result<(), ConversationError> {
    if content.trim().is_empty() {
        Err(ConversationError::EmptyMessage)
    } else if !registration::is_storable(content) {
        Err(ConversationError::UnstorableContent)
    } else if limits::exceeds(content, MAX_MESSAGE_CHARS) {
        Err(ConversationError::ContentTooLong)
    } else {
        Ok(())
    }
}

impl Aggregate for Conversation {
    const TYPE: &'static str = "conversation";
    type Command = ConversationCommand;
    type Event = ConversationEvent;
    type Error = ConversationError;
    type Services = ChatServices;

    async fn handle(
        &mut self,
        command: ConversationCommand,
        services: &ChatServices,
        sink: &EventSink<Self>,
    ) -> Result<(), ConversationError> {
        let event = match command {
            ConversationCommand::Send {
                sender,
                recipient,
                content,
                sent_at,
            } => {
                if sender == recipient {
                    return Err(ConversationError::CannotMessageSelf);
                }
                if !self.belongs_here(&sender, &recipient) {
                    return Err(ConversationError::WrongConversation);
                }
                check_content(&content)?;
                let standing = services.contacts.standing(&sender, &recipient).await?;
                if !standing.sender_registered {
                    return Err(ConversationError::SenderNotRegistered);
                }
                if !standing.recipient_registered {
                    return Err(ConversationError::UnknownRecipient(recipient));
                }
                may_write(&standing, services.policy)?;
                ConversationEvent::PrivateMessageSent {
                    sender,
                    recipient,
                    number: self.messages + 1,
                    content,
                    sent_at,
                }
            }
            ConversationCommand::MarkRead {
                reader,
                up_to,
                read_at,
            } => {
                if !self.is_participant(&reader) {
                    return Err(ConversationError::NotAParticipant);
                }
                if up_to > self.messages {
                    return Err(ConversationError::UnknownMessage);
                }
                if up_to <= self.read_up_to.get(&reader).copied().unwrap_or(0) {
                    return Ok(());
                }
                ConversationEvent::ConversationRead {
                    reader,
                    up_to,
                    read_at,
                }
            }
            ConversationCommand::ForgetParticipant {
                participant,
                forgotten_at,
            } => {
                if !self.is_participant(&participant) {
                    return Err(ConversationError::NotAParticipant);
                }
                if self.forgotten.contains(&participant) {
                    return Ok(());
                }
                ConversationEvent::ParticipantForgotten {
                    participant,
                    forgotten_at,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: ConversationEvent) {
        match event {
            ConversationEvent::PrivateMessageSent {
                sender,
                recipient,
                number,
                ..
            } => {
                if self.participants.is_none() {
                    let mut pair = [sender, recipient];
                    pair.sort();
                    self.participants = Some(pair);
                }
                self.messages = number;
            }
            ConversationEvent::ConversationRead { reader, up_to, .. } => {
                self.read_up_to.insert(reader, up_to);
            }
            ConversationEvent::ParticipantForgotten { participant, .. } => {
                self.forgotten.insert(participant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::contacts::ContactBook;

    /// A contact book that gives every pair the same standing.
    struct FixedStanding(Mutex<Result<Standing, DirectoryError>>);

    #[async_trait]
    impl ContactBook for FixedStanding {
        async fn standing(&self, _: &str, _: &str) -> Result<Standing, DirectoryError> {
            self.0.lock().unwrap().clone()
        }
    }

    fn connected() -> Standing {
        Standing {
            sender_registered: true,
            recipient_registered: true,
            sender_follows_recipient: false,
            recipient_follows_sender: true,
            recipient_blocks_sender: false,
            sender_blocks_recipient: false,
        }
    }

    fn framework_with(
        standing: Result<Standing, DirectoryError>,
        policy: ChatPolicy,
    ) -> TestFramework<Conversation> {
        TestFramework::with(ChatServices {
            contacts: Arc::new(FixedStanding(Mutex::new(standing))),
            policy,
        })
    }

    fn framework() -> TestFramework<Conversation> {
        framework_with(Ok(connected()), ChatPolicy::Connected)
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    fn send(sender: &str, recipient: &str, content: &str) -> ConversationCommand {
        ConversationCommand::Send {
            sender: sender.into(),
            recipient: recipient.into(),
            content: content.into(),
            sent_at: at(),
        }
    }

    fn sent(sender: &str, recipient: &str, number: u64, content: &str) -> ConversationEvent {
        ConversationEvent::PrivateMessageSent {
            sender: sender.into(),
            recipient: recipient.into(),
            number,
            content: content.into(),
            sent_at: at(),
        }
    }

    #[test]
    fn a_participant_is_forgotten_once_and_only_a_participant() {
        let forget = |participant: &str| ConversationCommand::ForgetParticipant {
            participant: participant.into(),
            forgotten_at: at(),
        };
        let forgotten = ConversationEvent::ParticipantForgotten {
            participant: "alice".into(),
            forgotten_at: at(),
        };
        framework()
            .given(vec![sent("alice", "bob", 1, "hi")])
            .when(forget("alice"))
            .then_expect_events(vec![forgotten.clone()]);
        framework()
            .given(vec![sent("alice", "bob", 1, "hi"), forgotten])
            .when(forget("alice"))
            .then_expect_events(vec![]);
        framework()
            .given(vec![sent("alice", "bob", 1, "hi")])
            .when(forget("carol"))
            .then_expect_error(ConversationError::NotAParticipant);
    }

    fn mark_read(reader: &str, up_to: u64) -> ConversationCommand {
        ConversationCommand::MarkRead {
            reader: reader.into(),
            up_to,
            read_at: at(),
        }
    }

    fn read(reader: &str, up_to: u64) -> ConversationEvent {
        ConversationEvent::ConversationRead {
            reader: reader.into(),
            up_to,
            read_at: at(),
        }
    }

    #[test]
    fn the_id_is_the_same_either_way_and_never_ambiguous() {
        assert_eq!(conversation_id("bob", "alice"), r#"["alice","bob"]"#);
        assert_eq!(
            conversation_id("alice", "bob"),
            conversation_id("bob", "alice")
        );
        // Names that a plain separator would confuse stay apart.
        assert_ne!(conversation_id("a,b", "c"), conversation_id("a", "b,c"));
        assert_ne!(conversation_id("a\"", "b"), conversation_id("a", "\"b"));
    }

    #[test]
    fn the_partner_is_read_back_from_the_id() {
        let id = conversation_id("bob", "a\"lice");
        assert_eq!(partner_in(&id, "bob").as_deref(), Some("a\"lice"));
        assert_eq!(partner_in(&id, "a\"lice").as_deref(), Some("bob"));
        assert_eq!(partner_in(&id, "carol"), None);
        assert_eq!(partner_in("not json", "bob"), None);
    }

    #[test]
    fn messages_are_numbered_in_one_order_for_both_directions() {
        framework()
            .given(vec![sent("alice", "bob", 1, "hi")])
            .when(send("bob", "alice", "hello"))
            .then_expect_events(vec![sent("bob", "alice", 2, "hello")]);
    }

    #[test]
    fn a_connected_pair_may_talk_in_either_direction_of_following() {
        for standing in [
            Standing {
                sender_follows_recipient: true,
                recipient_follows_sender: false,
                ..connected()
            },
            connected(),
        ] {
            framework_with(Ok(standing), ChatPolicy::Connected)
                .given_no_previous_events()
                .when(send("alice", "bob", "hi"))
                .then_expect_events(vec![sent("alice", "bob", 1, "hi")]);
        }
    }

    #[test]
    fn strangers_may_talk_only_when_the_policy_says_anyone() {
        let strangers = Standing {
            recipient_follows_sender: false,
            ..connected()
        };
        framework_with(Ok(strangers), ChatPolicy::Connected)
            .given_no_previous_events()
            .when(send("alice", "bob", "hi"))
            .then_expect_error(ConversationError::NotConnected);
        framework_with(Ok(strangers), ChatPolicy::Anyone)
            .given_no_previous_events()
            .when(send("alice", "bob", "hi"))
            .then_expect_events(vec![sent("alice", "bob", 1, "hi")]);
    }

    #[test]
    fn a_block_holds_whatever_the_policy() {
        let blocked = Standing {
            recipient_blocks_sender: true,
            ..connected()
        };
        for policy in [ChatPolicy::Connected, ChatPolicy::Anyone] {
            framework_with(Ok(blocked), policy)
                .given(vec![sent("alice", "bob", 1, "hi")])
                .when(send("alice", "bob", "hello?"))
                .then_expect_error(ConversationError::Blocked);
        }
        assert_eq!(
            ConversationError::Blocked.to_string(),
            ConversationError::NotConnected.to_string(),
            "a blocked sender is told nothing more than a stranger"
        );
    }

    #[test]
    fn a_block_cuts_both_ways_and_the_blocker_is_told_their_own_block() {
        let blocking = Standing {
            sender_blocks_recipient: true,
            ..connected()
        };
        for policy in [ChatPolicy::Connected, ChatPolicy::Anyone] {
            // Given a conversation, when the one who blocked writes, then it is refused,
            // saying why.
            framework_with(Ok(blocking), policy)
                .given(vec![sent("bob", "alice", 1, "hi")])
                .when(send("alice", "bob", "one more thing"))
                .then_expect_error(ConversationError::SenderBlocksRecipient);
        }
        // Blocked both ways, the sender hears of their own block, which reveals nothing of
        // the other's.
        let mutual = Standing {
            recipient_blocks_sender: true,
            ..blocking
        };
        framework_with(Ok(mutual), ChatPolicy::Anyone)
            .given_no_previous_events()
            .when(send("alice", "bob", "hi"))
            .then_expect_error(ConversationError::SenderBlocksRecipient);
        // A block is named before the policy: unblocking is what the sender can do about it.
        let blocking_a_stranger = Standing {
            recipient_follows_sender: false,
            ..blocking
        };
        assert_eq!(
            may_write(&blocking_a_stranger, ChatPolicy::Connected),
            Err(ConversationError::SenderBlocksRecipient)
        );
        assert_eq!(may_write(&connected(), ChatPolicy::Connected), Ok(()));
    }

    #[test]
    fn unknown_users_self_talk_and_bad_content_are_refused() {
        let cases = [
            (
                Standing {
                    recipient_registered: false,
                    ..connected()
                },
                send("alice", "nobody", "hi"),
                ConversationError::UnknownRecipient("nobody".into()),
            ),
            (
                Standing {
                    sender_registered: false,
                    ..connected()
                },
                send("ghost", "bob", "hi"),
                ConversationError::SenderNotRegistered,
            ),
            (
                connected(),
                send("alice", "alice", "hi"),
                ConversationError::CannotMessageSelf,
            ),
            (
                connected(),
                send("alice", "bob", " \n"),
                ConversationError::EmptyMessage,
            ),
            (
                connected(),
                send("alice", "bob", "a\0b"),
                ConversationError::UnstorableContent,
            ),
            (
                connected(),
                send("alice", "bob", &"x".repeat(MAX_MESSAGE_CHARS + 1)),
                ConversationError::ContentTooLong,
            ),
        ];
        for (standing, command, error) in cases {
            framework_with(Ok(standing), ChatPolicy::Connected)
                .given_no_previous_events()
                .when(command)
                .then_expect_error(error);
        }
    }

    #[test]
    fn a_failing_contact_book_refuses_without_an_event() {
        let down = DirectoryError::Unreachable("down".into());
        framework_with(Err(down.clone()), ChatPolicy::Anyone)
            .given_no_previous_events()
            .when(send("alice", "bob", "hi"))
            .then_expect_error(ConversationError::Contacts(down));
    }

    #[test]
    fn a_stream_takes_only_its_own_pair() {
        framework()
            .given(vec![sent("alice", "bob", 1, "hi")])
            .when(send("alice", "carol", "hi"))
            .then_expect_error(ConversationError::WrongConversation);
    }

    #[test]
    fn read_marks_move_forward_only_and_only_for_participants() {
        let history = || {
            vec![
                sent("alice", "bob", 1, "one"),
                sent("alice", "bob", 2, "two"),
            ]
        };
        framework()
            .given(history())
            .when(mark_read("bob", 2))
            .then_expect_events(vec![read("bob", 2)]);
        framework()
            .given([history(), vec![read("bob", 2)]].concat())
            .when(mark_read("bob", 1))
            .then_expect_events(vec![]);
        framework()
            .given(history())
            .when(mark_read("bob", 3))
            .then_expect_error(ConversationError::UnknownMessage);
        framework()
            .given(history())
            .when(mark_read("carol", 1))
            .then_expect_error(ConversationError::NotAParticipant);
        framework()
            .given_no_previous_events()
            .when(mark_read("bob", 0))
            .then_expect_error(ConversationError::NotAParticipant);
    }
}
