//! The read queries of private messages: a user's inbox, a conversation's pages, and blocks.
//!
//! Every query names its user, and reads only that user's rows (the inbox) or the
//! conversation between that user and one other (whose id is derived from the two names):
//! no query can reach the messages of a conversation the user is not part of.

use chrono::{DateTime, Utc};
use domain::registration::is_storable;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::conversations::Conversations;
use crate::queries::ReadModels;

/// Messages per page of a conversation.
pub const CONVERSATION_PAGE_SIZE: i64 = 50;
/// Conversations an inbox lists.
pub const INBOX_SIZE: i64 = 100;

/// A page of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationPage {
    /// Newest first.
    pub messages: Vec<PrivateMessage>,
    /// Where the next (older) page starts, as its `before`; none on the first messages.
    pub older: Option<i64>,
    /// The page of the messages after these, for a page asked for with `before`; none when
    /// this page holds the newest message.
    pub later: Option<LaterPage>,
}

/// The page after an older page of a conversation, down towards the newest message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaterPage {
    /// The page asked for with this `before`: the next full page down.
    Before(i64),
    /// The newest page, which holds every message after this page's.
    Newest,
}

/// One conversation as the inbox lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    pub partner: String,
    /// The partner's email (for the avatar); empty if the accounts view lags.
    pub partner_email: String,
    pub last: PrivateMessage,
    /// The partner's messages the owner has not read.
    pub unread: i64,
}

/// One private message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateMessage {
    /// Its place in the conversation, from 1.
    pub number: i64,
    pub sender: String,
    pub recipient: String,
    /// Empty if removed.
    pub content: String,
    pub sent_at: DateTime<Utc>,
    /// Whether the sender was forgotten, and the text with them.
    pub removed: bool,
}

impl ReadModels {
    /// `owner`'s conversations, the one with the newest message first, at most
    /// [`INBOX_SIZE`].
    pub async fn inbox(&self, owner: &str) -> Result<Vec<InboxEntry>, sqlx::Error> {
        if !is_storable(owner) {
            return Ok(Vec::new());
        }
        sqlx::query(&format!(
            "SELECT i.partner, coalesce(u.email, '') AS partner_email, i.unread, \
                    i.last_number AS number, i.last_sender AS sender, \
                    CASE WHEN i.last_sender = i.owner THEN i.partner ELSE i.owner END \
                        AS recipient, \
                    i.last_content AS content, i.last_removed AS removed, \
                    i.last_sent_at AS sent_at \
             FROM {chat}.inbox i LEFT JOIN {accounts}.users u ON u.username = i.partner \
             WHERE i.owner = $1 ORDER BY i.last_position DESC LIMIT $2",
            chat = self.schema_of(&Conversations),
            accounts = self.accounts_schema()
        ))
        .bind(owner)
        .bind(INBOX_SIZE)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|row| {
            Ok(InboxEntry {
                partner: row.try_get("partner")?,
                partner_email: row.try_get("partner_email")?,
                unread: row.try_get("unread")?,
                last: message_from_row(row)?,
            })
        })
        .collect()
    }

    /// How many messages `owner` has not read, over every conversation.
    pub async fn unread_total(&self, owner: &str) -> Result<i64, sqlx::Error> {
        if !is_storable(owner) {
            return Ok(0);
        }
        sqlx::query_scalar(&format!(
            "SELECT coalesce(sum(unread), 0)::bigint FROM {}.inbox WHERE owner = $1",
            self.schema_of(&Conversations)
        ))
        .bind(owner)
        .fetch_one(self.pool())
        .await
    }

    /// A page of the messages between `owner` and `partner`: the newest ones, or those
    /// numbered below `before` (the next page up the conversation).
    pub async fn conversation_page(
        &self,
        owner: &str,
        partner: &str,
        before: Option<i64>,
    ) -> Result<ConversationPage, sqlx::Error> {
        if !is_storable(owner) || !is_storable(partner) {
            return Ok(ConversationPage {
                messages: Vec::new(),
                older: None,
                later: None,
            });
        }
        let messages = sqlx::query(&format!(
            "SELECT number, sender, recipient, content, removed, sent_at \
             FROM {}.private_messages \
             WHERE conversation_id = $1 AND number < $2 \
             ORDER BY number DESC LIMIT $3",
            self.schema_of(&Conversations)
        ))
        .bind(domain::conversation_id(owner, partner))
        .bind(before.unwrap_or(i64::MAX))
        .bind(CONVERSATION_PAGE_SIZE)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(message_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        // A full page whose oldest message is not the first has more above it.
        let older = match messages.last() {
            Some(oldest)
                if messages.len() as i64 == CONVERSATION_PAGE_SIZE && oldest.number > 1 =>
            {
                Some(oldest.number)
            }
            _ => None,
        };
        let later = match before {
            Some(before) => self.later_page(owner, partner, before).await?,
            None => None,
        };
        Ok(ConversationPage {
            messages,
            older,
            later,
        })
    }

    /// The page after the one of the messages between `owner` and `partner` numbered below
    /// `before`.
    async fn later_page(
        &self,
        owner: &str,
        partner: &str,
        before: i64,
    ) -> Result<Option<LaterPage>, sqlx::Error> {
        let newest: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT max(number) FROM {}.private_messages WHERE conversation_id = $1",
            self.schema_of(&Conversations)
        ))
        .bind(domain::conversation_id(owner, partner))
        .fetch_one(self.pool())
        .await?;
        Ok(newest.and_then(|newest| later_page(before, newest)))
    }
}

/// The page after the one of the messages numbered below `before`, in a conversation whose
/// newest message is numbered `newest`: the next full page, or the newest page once that
/// holds every message from `before` on.
fn later_page(before: i64, newest: i64) -> Option<LaterPage> {
    if newest < before {
        None
    } else if newest < before.saturating_add(CONVERSATION_PAGE_SIZE) {
        Some(LaterPage::Newest)
    } else {
        Some(LaterPage::Before(before + CONVERSATION_PAGE_SIZE))
    }
}

fn message_from_row(row: &PgRow) -> Result<PrivateMessage, sqlx::Error> {
    Ok(PrivateMessage {
        number: row.try_get("number")?,
        sender: row.try_get("sender")?,
        recipient: row.try_get("recipient")?,
        content: row.try_get("content")?,
        sent_at: row.try_get("sent_at")?,
        removed: row.try_get("removed")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_page_leads_down_a_page_at_a_time_then_to_the_newest() {
        // 120 messages: the newest page holds 71..=120, the older ones 21..=70 and 1..=20.
        assert_eq!(later_page(21, 120), Some(LaterPage::Before(71)));
        assert_eq!(later_page(71, 120), Some(LaterPage::Newest));
        // Paged from elsewhere: 20..=69 leads to 70..=119, which leads to the newest.
        assert_eq!(later_page(70, 120), Some(LaterPage::Before(120)));
        assert_eq!(later_page(121, 120), None, "this page holds the newest");
        assert_eq!(later_page(i64::MAX, 120), None);
    }
}
