//! The port through which a conversation learns how its two users stand to each other, and
//! the policy of who may message whom.
//!
//! Like [`crate::directory`], whose reasons it shares: a private message is decided in its
//! conversation's aggregate, but whether the sender may send it depends on other aggregates
//! (both users' follows, and both users' blocks: a block cuts both ways), so it is a read
//! through this trait, which the server answers from the event store, always current.

use std::sync::Arc;

use async_trait::async_trait;

use crate::directory::DirectoryError;

/// How a sender and a recipient stand to each other, as far as messaging goes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub sender_registered: bool,
    pub recipient_registered: bool,
    pub sender_follows_recipient: bool,
    pub recipient_follows_sender: bool,
    pub recipient_blocks_sender: bool,
    /// The sender has blocked the recipient: they may not write to them either, until they
    /// lift the block.
    pub sender_blocks_recipient: bool,
}

/// Answers how two users stand to each other.
#[async_trait]
pub trait ContactBook: Send + Sync {
    /// How `sender` and `recipient` (exact usernames) stand now.
    async fn standing(&self, sender: &str, recipient: &str) -> Result<Standing, DirectoryError>;
}

/// Whom a user may message, besides the blocks, which always hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatPolicy {
    /// Only someone they follow or who follows them: a stranger cannot start a conversation.
    Connected,
    /// Any registered user.
    Anyone,
}

impl ChatPolicy {
    /// Whether the policy lets the sender message the recipient (blocks aside).
    pub fn allows(self, standing: &Standing) -> bool {
        match self {
            Self::Connected => {
                standing.sender_follows_recipient || standing.recipient_follows_sender
            }
            Self::Anyone => true,
        }
    }
}

/// The services handed to the conversation aggregate's `handle`.
#[derive(Clone)]
pub struct ChatServices {
    pub contacts: Arc<dyn ContactBook>,
    pub policy: ChatPolicy,
}
