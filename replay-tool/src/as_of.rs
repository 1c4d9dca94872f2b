//! A timeline as it stood at a point in the log (`as-of`): built by folding the log up to
//! that point in this process, without touching the live views or their versions.
//!
//! The fold keeps what a timeline needs of every message (author, time, place in the log,
//! whether it is hidden) and whom each user follows, then opens the texts of only the
//! messages it shows. Ordered as the live timelines are: newest `pub_date` (whole seconds)
//! first, ties by log position, newest first. A message whose author has since been
//! forgotten is listed as removed: the log no longer holds its text in a readable form.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use database::event_log::{self, StoredEvent, Until};
use domain::{Message, MessageEvent, User, UserEvent};
use futures_util::StreamExt as _;
use projections::log::Decode as _;

use crate::admin::Admin;
use crate::terminal::printable;

/// Which timeline: `public`, `user:NAME` (what NAME posted) or `own:NAME` (what NAME posted
/// and what those they followed then posted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timeline {
    Public,
    User(String),
    Own(String),
}

impl FromStr for Timeline {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            None if text == "public" => Ok(Self::Public),
            Some(("user", name)) if !name.is_empty() => Ok(Self::User(name.to_owned())),
            Some(("own", name)) if !name.is_empty() => Ok(Self::Own(name.to_owned())),
            _ => Err(format!(
                "{text:?} is not a timeline: say public, user:NAME or own:NAME"
            )),
        }
    }
}

/// Where in the log: a global position (digits), or an RFC 3339 time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point(pub Until);

impl FromStr for Point {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(position) = text.parse::<i64>() {
            return Ok(Self(Until::Position(position)));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|time| Self(Until::Time(time.with_timezone(&Utc))))
            .map_err(|_| format!("{text:?} is neither a log position nor an RFC 3339 time"))
    }
}

/// A message as the fold keeps it.
struct Kept {
    author: String,
    posted_at: DateTime<Utc>,
    position: i64,
    hidden: bool,
}

/// One entry of the timeline shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub position: i64,
    pub posted_at: DateTime<Utc>,
    pub author: String,
    /// `None`: the author was forgotten since, and the text with them.
    pub content: Option<String>,
}

/// The newest `limit` entries of `timeline` as of `point`.
pub async fn timeline(
    admin: &Admin,
    point: Point,
    timeline: &Timeline,
    limit: usize,
) -> anyhow::Result<Vec<Entry>> {
    let upcasters = domain::upcasting::upcasters();
    let mut messages: HashMap<String, Kept> = HashMap::new();
    let mut following: BTreeSet<String> = BTreeSet::new();
    let mut conn = admin.pool.acquire().await?;
    let types = [User::TYPE, Message::TYPE];
    let mut events = event_log::events_until(&mut conn, &types, point.0);
    while let Some(event) = events.next().await {
        let mut event = event?;
        // Only who follows whom and the messages' fates are needed: no personal field.
        database::sealing::blank_fields(&mut event.payload);
        if event.aggregate_type == User::TYPE {
            if let Timeline::Own(me) = timeline {
                if event.aggregate_id == *me {
                    match event.decode::<User>(&upcasters)?.payload {
                        UserEvent::UserFollowed { followee, .. } => {
                            following.insert(followee);
                        }
                        UserEvent::UserUnfollowed { followee, .. } => {
                            following.remove(&followee);
                        }
                        _ => {}
                    }
                }
            }
            continue;
        }
        let envelope = event.decode::<Message>(&upcasters)?;
        let id = envelope.aggregate_id;
        match envelope.payload {
            MessageEvent::MessagePosted {
                author, posted_at, ..
            } => {
                let kept = Kept {
                    author,
                    posted_at,
                    position: event.position.global_position,
                    hidden: false,
                };
                messages.entry(id).or_insert(kept);
            }
            MessageEvent::MessageFlagged { .. } | MessageEvent::MessageRemoved { .. } => {
                if let Some(kept) = messages.get_mut(&id) {
                    kept.hidden = true;
                }
            }
            MessageEvent::MessageUnflagged { .. } => {
                if let Some(kept) = messages.get_mut(&id) {
                    kept.hidden = false;
                }
            }
        }
    }
    // The texts are read on other connections: this one goes back to the pool first.
    drop(events);
    drop(conn);
    let shown = |kept: &Kept| match timeline {
        Timeline::Public => true,
        Timeline::User(name) => kept.author == *name,
        Timeline::Own(name) => kept.author == *name || following.contains(&kept.author),
    };
    let mut chosen: Vec<(String, Kept)> = messages
        .into_iter()
        .filter(|(_, kept)| !kept.hidden && shown(kept))
        .collect();
    chosen.sort_by_key(|(_, kept)| std::cmp::Reverse((kept.posted_at.timestamp(), kept.position)));
    chosen.truncate(limit);
    let mut entries = Vec::with_capacity(chosen.len());
    for (id, kept) in chosen {
        entries.push(Entry {
            content: text_of(admin, &id).await?,
            position: kept.position,
            posted_at: kept.posted_at,
            author: kept.author,
        });
    }
    Ok(entries)
}

/// The text the message `id` was posted with, opened; `None` if its author was forgotten.
async fn text_of(admin: &Admin, id: &str) -> anyhow::Result<Option<String>> {
    let mut posted: Vec<StoredEvent> = event_log::events_of_stream(&admin.pool, Message::TYPE, id)
        .await?
        .into_iter()
        .filter(|event| event.event_type == "MessagePosted")
        .collect();
    let sealed_for_forgotten = posted.first().and_then(|event| {
        database::sealing::subjects(&event.payload)
            .next()
            .map(str::to_owned)
    });
    admin.keys.open_events(&mut posted).await?;
    let Some(event) = posted.first() else {
        anyhow::bail!("the message {id} has no MessagePosted event");
    };
    if let Some(author) = sealed_for_forgotten {
        if database::keyring::is_forgotten(&admin.pool, &author).await? {
            return Ok(None);
        }
    }
    Ok(event.payload["MessagePosted"]["content"]
        .as_str()
        .map(str::to_owned))
}

/// The entries as the timeline lists them.
pub struct Listing<'a>(pub &'a [Entry]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "(no messages)");
        }
        for entry in self.0 {
            writeln!(
                f,
                "{}\t{}\t{}\t{}",
                entry.position,
                entry
                    .posted_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                printable(&entry.author),
                entry.content.as_deref().map_or_else(
                    || "(removed: the author was forgotten)".to_owned(),
                    printable
                )
            )?;
        }
        Ok(())
    }
}
