//! Property tests of the `Message` aggregate: random histories of posts, flags, unflags and
//! removals —
//! reposts, flags of unposted messages, hostile content and moderation notes, authors who
//! do not exist, while the directory is sometimes down — checked step by step against a
//! reference model (see [`crate::testing`] for what each step must satisfy).

use proptest::prelude::*;

use super::*;
use crate::testing::{self, check_history, FakeDirectory, ReferenceModel, REGISTERED_ELSEWHERE};

/// What a message's accepted commands imply: whether it was posted, and whether it is
/// flagged now.
#[derive(Debug, Default)]
struct MessageModel {
    posted: bool,
    flagged: bool,
    removed: bool,
}

impl MessageModel {
    /// Whether flagging (`flag`) or unflagging the message changes anything; refused when
    /// the aggregate must refuse it.
    fn moderate(&mut self, flag: bool, moderation: &Moderation) -> Result<bool, MessageError> {
        if !self.posted || self.removed {
            return Err(MessageError::UnknownMessage);
        }
        if self.flagged == flag {
            return Ok(false);
        }
        if moderation.moderator.contains('\0') || moderation.reason.contains('\0') {
            return Err(MessageError::UnstorableContent);
        }
        self.flagged = flag;
        Ok(true)
    }
}

impl ReferenceModel for MessageModel {
    type Aggregate = Message;

    fn expect(
        &mut self,
        command: &MessageCommand,
        directory: &FakeDirectory,
    ) -> Result<Vec<MessageEvent>, MessageError> {
        let event = match command.clone() {
            MessageCommand::Post {
                author,
                content,
                posted_at,
            } => {
                if self.posted {
                    return Err(MessageError::AlreadyPosted);
                }
                if content.contains('\0') {
                    return Err(MessageError::UnstorableContent);
                }
                if !directory.answer(&author)? {
                    return Err(MessageError::UnknownAuthor(author));
                }
                self.posted = true;
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
                if !self.moderate(true, &moderation)? {
                    return Ok(vec![]);
                }
                MessageEvent::MessageFlagged {
                    flagged_at,
                    moderation,
                }
            }
            MessageCommand::Unflag {
                unflagged_at,
                moderation,
            } => {
                if !self.moderate(false, &moderation)? {
                    return Ok(vec![]);
                }
                MessageEvent::MessageUnflagged {
                    unflagged_at,
                    moderation,
                }
            }
            MessageCommand::Remove { removed_at } => {
                if !self.posted {
                    return Err(MessageError::UnknownMessage);
                }
                if std::mem::replace(&mut self.removed, true) {
                    return Ok(vec![]);
                }
                MessageEvent::MessageRemoved { removed_at }
            }
        };
        Ok(vec![event])
    }

    fn state(&self) -> Message {
        Message {
            posted: self.posted,
            flagged: self.flagged,
            removed: self.removed,
        }
    }
}

fn moderation() -> impl Strategy<Value = Moderation> {
    (testing::hostile_text(), testing::hostile_text())
        .prop_map(|(moderator, reason)| Moderation { moderator, reason })
}

fn message_command() -> impl Strategy<Value = MessageCommand> {
    prop_oneof![
        3 => (testing::username(), testing::hostile_text(), testing::instant()).prop_map(
            |(author, content, posted_at)| MessageCommand::Post { author, content, posted_at }
        ),
        2 => (testing::instant(), moderation()).prop_map(|(flagged_at, moderation)| {
            MessageCommand::Flag { flagged_at, moderation }
        }),
        2 => (testing::instant(), moderation()).prop_map(|(unflagged_at, moderation)| {
            MessageCommand::Unflag { unflagged_at, moderation }
        }),
        1 => testing::instant().prop_map(|removed_at| MessageCommand::Remove { removed_at }),
    ]
}

proptest! {
    // Enough to reach every branch many times over while `cargo test -p domain` stays quick.
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_message_history_folds_to_the_state_its_commands_imply(
        history in testing::history(message_command())
    ) {
        check_history(MessageModel::default(), FakeDirectory::with(REGISTERED_ELSEWHERE), history)?;
    }
}
