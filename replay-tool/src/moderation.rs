//! Moderation — what the original's `flag_tool` did, done safely: list messages with their
//! flag state; flag and unflag them by id. Flagging is a command on the message, so the
//! decision (with who took it and why) is an event in the log, and the projections take the
//! message off every timeline and the API. An unknown id is reported, never "flagged".

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::CommandError;
use domain::{MessageCommand, MessageError, Moderation};
use projections::ModeratedMessage;
use serde::Serialize;

use crate::admin::Admin;
use crate::terminal::printable;

/// How long a decision waits for the views to apply it (a running server does so in
/// milliseconds; with no server running, the wait runs out and the report says so).
const VIEW_WAIT: Duration = Duration::from_secs(3);

/// A listed message.
#[derive(Debug, Serialize)]
pub struct ListedMessage {
    pub id: String,
    pub author: String,
    pub text: String,
    pub posted_at: DateTime<Utc>,
    pub flagged: bool,
}

impl From<ModeratedMessage> for ListedMessage {
    fn from(message: ModeratedMessage) -> Self {
        Self {
            id: message.message_id,
            author: message.author,
            text: message.content,
            posted_at: DateTime::from_timestamp(message.pub_date, 0).unwrap_or_default(),
            flagged: message.flagged,
        }
    }
}

/// Messages newest first, flagged ones included (or only them).
pub async fn list(
    admin: &Admin,
    author: Option<&str>,
    flagged_only: bool,
    limit: i64,
) -> anyhow::Result<Vec<ListedMessage>> {
    let (reads, _) = admin.reads().await?;
    let messages = reads
        .moderation_listing(author, flagged_only, limit)
        .await?;
    Ok(messages.into_iter().map(ListedMessage::from).collect())
}

/// The listing as a table; texts with control characters escaped.
pub struct Listing<'a>(pub &'a [ListedMessage]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<36}  {:<7}  {:<16}  {:<20}  TEXT",
            "ID", "FLAGGED", "POSTED (UTC)", "AUTHOR"
        )?;
        for message in self.0 {
            writeln!(
                f,
                "{:<36}  {:<7}  {:<16}  {:<20}  {}",
                message.id,
                if message.flagged { "yes" } else { "no" },
                message.posted_at.format("%Y-%m-%d %H:%M"),
                printable(&message.author),
                printable(&message.text)
            )?;
        }
        write!(f, "{} messages", self.0.len())
    }
}

/// Flag (or unflag) each of `ids`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Flag,
    Unflag,
}

/// What became of one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded, and the views already show it.
    Applied,
    /// Recorded; the views will show it once a server projects it.
    Recorded,
    /// It already was in that state: nothing recorded.
    Unchanged,
    /// No message has this id: nothing recorded.
    Unknown,
}

/// Takes `decision` on every message of `ids`, as `moderation`; returns each id's outcome.
pub async fn decide(
    admin: &Admin,
    decision: Decision,
    ids: &[String],
    moderation: Moderation,
) -> anyhow::Result<Vec<(String, Outcome)>> {
    let commands = admin.commands(VIEW_WAIT).await?;
    let (reads, _) = admin.reads().await?;
    let wanted = decision == Decision::Flag;
    let before = reads.moderated_by_id(ids).await?;
    let context = commands::CommandContext {
        request_id: Some(format!("minitwit-replay-{}", uuid::Uuid::now_v7())),
        received_at: Utc::now(),
        latest: None,
    };
    let mut outcomes = Vec::with_capacity(ids.len());
    for id in ids {
        let already = before
            .iter()
            .any(|message| &message.message_id == id && message.flagged == wanted);
        let now = Utc::now();
        let command = match decision {
            Decision::Flag => MessageCommand::Flag {
                flagged_at: now,
                moderation: moderation.clone(),
            },
            Decision::Unflag => MessageCommand::Unflag {
                unflagged_at: now,
                moderation: moderation.clone(),
            },
        };
        let outcome = match commands.message(id, command, &context).await {
            Ok(()) if already => Outcome::Unchanged,
            Ok(()) => {
                let shown = reads.moderated_by_id(std::slice::from_ref(id)).await?;
                if shown.iter().any(|message| message.flagged == wanted) {
                    Outcome::Applied
                } else {
                    Outcome::Recorded
                }
            }
            Err(CommandError::Rejected(MessageError::UnknownMessage)) => Outcome::Unknown,
            Err(err) => return Err(anyhow::anyhow!("{decision:?} {id}: {err}")),
        };
        outcomes.push((id.clone(), outcome));
    }
    Ok(outcomes)
}

impl Outcome {
    /// What to tell the administrator about `id` after `decision`.
    pub fn describe(&self, id: &str, decision: Decision) -> String {
        let (done, state) = match decision {
            Decision::Flag => ("flagged", "hidden from every timeline and the API"),
            Decision::Unflag => ("unflagged", "shown again"),
        };
        let id = printable(id);
        match self {
            Self::Applied => format!("{id}: {done}; {state}"),
            Self::Recorded => {
                format!("{id}: {done}; the views apply it when a server runs (none did meanwhile)")
            }
            Self::Unchanged => format!("{id}: already {done}; nothing recorded"),
            Self::Unknown => format!("{id}: no such message; nothing recorded"),
        }
    }
}
