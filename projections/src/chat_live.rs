//! Live private messages: what the conversations projection has just applied, announced to
//! whoever in this process is watching. Each watcher passes on only what concerns its own
//! user (see [`ChatUpdate::concerns`]).
//!
//! It follows the conversations' checkpoint the way the timelines' feed follows theirs
//! ([`crate::live`]), so on every replica an update arrives once the view holds it: a page
//! that reloads then shows the same.

use std::sync::Arc;

use database::event_log::LogPosition;
use database::keyring::{Keyring, FORGOTTEN_MARK};
use domain::{Conversation, ConversationEvent};
use sqlx::PgPool;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::chat_queries::PrivateMessage;
use crate::conversations::Conversations;
use crate::live::{follow_checkpoint, read_stretch};
use crate::log::Decode as _;
use crate::progress::Progress;

/// How many updates a slow subscriber may fall behind before it is told it lagged.
const CHANNEL_CAPACITY: usize = 1024;

/// A change to someone's conversations, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatUpdate {
    /// A message was sent.
    Sent(PrivateMessage),
    /// `reader` has read the conversation with `partner` up to message `up_to`.
    Read {
        reader: String,
        partner: String,
        up_to: i64,
    },
}

impl ChatUpdate {
    /// Whether `user` is one of the two people this update is about: nobody else may see it.
    pub fn concerns(&self, user: &str) -> bool {
        match self {
            Self::Sent(message) => message.sender == user || message.recipient == user,
            // Only the reader's own pages show their unread counts.
            Self::Read { reader, .. } => reader == user,
        }
    }
}

/// The broadcast of chat updates in this process. Cheap to clone.
#[derive(Clone)]
pub struct ChatFeed {
    sender: broadcast::Sender<Arc<ChatUpdate>>,
}

impl Default for ChatFeed {
    fn default() -> Self {
        Self::new()
    }
}

impl ChatFeed {
    /// A feed with nobody watching yet.
    pub fn new() -> Self {
        Self {
            sender: broadcast::Sender::new(CHANNEL_CAPACITY),
        }
    }

    /// Updates from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChatUpdate>> {
        self.sender.subscribe()
    }

    /// Follows the conversations' checkpoint until `cancel` fires, broadcasting what each
    /// move of it brought; skipped unread while nobody is subscribed.
    pub async fn run(
        self,
        pool: PgPool,
        keys: Keyring,
        progress: Progress,
        cancel: CancellationToken,
    ) {
        let upcasters = domain::upcasting::upcasters();
        let announce = |from, to| self.announce(&pool, &keys, &upcasters, from, to);
        let nobody_listens = || self.sender.receiver_count() == 0;
        follow_checkpoint(&progress, &Conversations, &cancel, nobody_listens, announce).await;
    }

    async fn announce(
        &self,
        pool: &PgPool,
        keys: &Keyring,
        upcasters: &[Box<dyn cqrs_es::persist::EventUpcaster>],
        from: LogPosition,
        to: LogPosition,
    ) -> anyhow::Result<()> {
        let mut events = read_stretch(pool, &Conversations, from, to).await?;
        keys.open_events(&mut events).await?;
        for event in events {
            let envelope = event.decode::<Conversation>(upcasters)?;
            let removed = envelope.metadata.contains_key(FORGOTTEN_MARK);
            let update = match envelope.payload {
                ConversationEvent::PrivateMessageSent {
                    sender,
                    recipient,
                    number,
                    content,
                    sent_at,
                } => ChatUpdate::Sent(PrivateMessage {
                    number: i64::try_from(number)?,
                    sender,
                    recipient,
                    content,
                    sent_at,
                    removed,
                }),
                ConversationEvent::ConversationRead { reader, up_to, .. } => ChatUpdate::Read {
                    partner: domain::partner_in(&envelope.aggregate_id, &reader).ok_or_else(
                        || anyhow::anyhow!("{reader:?} read a conversation they are not in"),
                    )?,
                    reader,
                    up_to: i64::try_from(up_to)?,
                },
                // The removal shows when the pages are next loaded.
                ConversationEvent::ParticipantForgotten { .. } => continue,
            };
            // An error only means nobody is subscribed any more.
            let _ = self.sender.send(Arc::new(update));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    #[test]
    fn an_update_concerns_only_its_two_people() {
        let sent = ChatUpdate::Sent(PrivateMessage {
            number: 1,
            sender: "alice".into(),
            recipient: "bob".into(),
            content: "hi".into(),
            sent_at: Utc::now(),
            removed: false,
        });
        assert!(sent.concerns("alice") && sent.concerns("bob"));
        assert!(!sent.concerns("carol") && !sent.concerns("Alice"));
        let read = ChatUpdate::Read {
            reader: "bob".into(),
            partner: "alice".into(),
            up_to: 1,
        };
        assert!(read.concerns("bob") && !read.concerns("alice"));
    }
}
