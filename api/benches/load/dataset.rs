//! The large store: a generated event log loaded through the admin tool's `import`, which
//! writes events in large transactions, so a million messages load in seconds where a
//! million commands would take an hour — and the views are then built from those events
//! like any others.
//!
//! Shape: `users` users named by number (`"1"` … — numbers, so that `pgbench` can pick one
//! with `random()`), registered first; a skewed follow graph (most users follow a handful,
//! a few follow many, popular users are followed by many); the reader follows exactly
//! [`READER_FOLLOWS`] others; then `messages` messages by skewed authors, one every ~30 s of
//! the past year. On request, two more users for workload 7: one whose stream holds
//! [`HEAVY_FOLLOW_EVENTS`] follow events, and one with nothing but its registration.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use chrono::{DateTime, Utc};
use domain::registration::PasswordHash;
use domain::{MessageEvent, UserEvent};

use crate::scenario::Rng;

/// Whom the reader ("my timeline") follows: as many as the issue asks for.
pub const READER_FOLLOWS: usize = 500;
/// Follow events already in the long stream of workload 7: as many as issue 15 asks for.
pub const HEAVY_FOLLOW_EVENTS: usize = 10_000;
/// Every generated user's password (the reader signs in with it).
pub const PASSWORD: &str = "bench password";

/// What to generate.
pub struct Shape {
    pub users: usize,
    pub messages: usize,
    /// The mean number of users a user follows (the reader aside).
    pub mean_follows: usize,
    /// For workload 7: how many users the two stream users follow and unfollow in the
    /// benchmark, which the long stream must therefore not follow already; `None` leaves the
    /// two out.
    pub stream_targets: Option<usize>,
}

/// What was generated.
pub struct Dataset {
    pub users: usize,
    pub messages: usize,
    /// Follow events of the follow graph (the stream users' aside).
    pub follows: usize,
    pub events: usize,
    /// The user whose personal timeline is read: a middle-ranked one, neither the most
    /// prolific author nor a silent one.
    pub reader: String,
    pub stream: Option<StreamUsers>,
}

/// Workload 7's users, named by the next numbers after the store's users, so that no other
/// workload (which picks among `1..=users`) writes to their streams.
pub struct StreamUsers {
    /// Its stream holds [`HEAVY_FOLLOW_EVENTS`] follow events.
    pub heavy: String,
    /// Its stream holds its registration alone.
    pub fresh: String,
    /// Users neither follows: the benchmark follows and unfollows them.
    pub targets: Vec<String>,
}

/// Writes the log as the admin tool's export format into `file`.
pub fn generate(
    file: &Path,
    shape: &Shape,
    password_hash: &PasswordHash,
) -> anyhow::Result<Dataset> {
    let users = shape.users;
    let mut rng = Rng::new(0x6d69_6e69_7477_6974);
    let mut out = Log::new(file)?;
    let start = Utc::now() - chrono::Duration::days(365);
    let spacing = Duration::from_secs(365 * 24 * 3600 / shape.messages.max(1) as u64);
    let reader = users / 2 + 1;
    let (heavy, fresh) = (users + 1, users + 2);
    let registered = if shape.stream_targets.is_some() {
        fresh
    } else {
        users
    };
    for user in 1..=registered {
        out.user_event(
            user,
            0,
            start,
            &UserEvent::UserRegistered {
                username: user.to_string(),
                email: format!("user{user}@bench.example"),
                password_hash: password_hash.clone(),
                registered_at: start,
            },
        )?;
    }
    // Cubing a uniform number: most users follow a few, a few follow many; the cap is four
    // times the mean (the mean of the cube of a uniform number is a quarter).
    let max_follows = 4 * shape.mean_follows.saturating_sub(1);
    let mut follows = 0;
    for user in 1..=users {
        let wanted = if user == reader {
            READER_FOLLOWS
        } else {
            1 + (max_follows as f64 * unit(&mut rng).powi(3)) as usize
        };
        let mut followed = HashSet::new();
        while followed.len() < wanted.min(users - 1) {
            let followee = skewed(&mut rng, users);
            if followee != user && followed.insert(followee) {
                out.user_event(
                    user,
                    followed.len() as i64,
                    start,
                    &UserEvent::UserFollowed {
                        followee: followee.to_string(),
                        followed_at: start,
                    },
                )?;
            }
        }
        follows += followed.len();
    }
    let stream = match shape.stream_targets {
        None => None,
        Some(targets) => {
            heavy_stream(&mut out, heavy, targets, users, start)?;
            Some(StreamUsers {
                heavy: heavy.to_string(),
                fresh: fresh.to_string(),
                targets: (1..=targets).map(|user| user.to_string()).collect(),
            })
        }
    };
    for number in 0..shape.messages {
        let posted_at = start + spacing * number as u32;
        let author = skewed(&mut rng, users);
        out.message_posted(
            number,
            posted_at,
            &MessageEvent::MessagePosted {
                author: author.to_string(),
                content: sentence(&mut rng, number),
                posted_at,
            },
        )?;
    }
    let events = out.finish()?;
    Ok(Dataset {
        users,
        messages: shape.messages,
        follows,
        events,
        reader: reader.to_string(),
        stream,
    })
}

/// The long stream: [`HEAVY_FOLLOW_EVENTS`] follows of the users after the first `targets`,
/// round and round; where the store has fewer users than that, each follow of someone
/// already followed comes after an unfollow, as it would have to through the API. Either
/// way the user ends up following every one of them.
fn heavy_stream(
    out: &mut Log,
    heavy: usize,
    targets: usize,
    users: usize,
    at: DateTime<Utc>,
) -> anyhow::Result<()> {
    ensure!(
        users > targets,
        "workload 7 needs more users than its {targets} targets"
    );
    let followees: Vec<usize> = (targets + 1..=users).collect();
    let mut followed = HashSet::new();
    let mut sequence = 0;
    for round in 0..HEAVY_FOLLOW_EVENTS {
        let followee = followees[round % followees.len()].to_string();
        if !followed.insert(followee.clone()) {
            sequence += 1;
            out.user_event(
                heavy,
                sequence,
                at,
                &UserEvent::UserUnfollowed {
                    followee: followee.clone(),
                    unfollowed_at: at,
                },
            )?;
        }
        sequence += 1;
        out.user_event(
            heavy,
            sequence,
            at,
            &UserEvent::UserFollowed {
                followee,
                followed_at: at,
            },
        )?;
    }
    Ok(())
}

/// A number in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    const SCALE: usize = 1 << 30;
    rng.below(SCALE) as f64 / SCALE as f64
}

/// A user number in 1..=users, low numbers far likelier: squaring a uniform number gives the
/// few very popular (and very prolific) users real networks have.
fn skewed(rng: &mut Rng, users: usize) -> usize {
    1 + ((users as f64 * unit(rng).powi(2)) as usize).min(users - 1)
}

/// A message of 5 to 24 words, numbered so that every message is distinct.
fn sentence(rng: &mut Rng, number: usize) -> String {
    const WORDS: [&str; 16] = [
        "event",
        "sourced",
        "timeline",
        "follow",
        "replay",
        "postgres",
        "rust",
        "tweet",
        "latency",
        "commit",
        "view",
        "projector",
        "catch-up",
        "checkpoint",
        "batch",
        "index",
    ];
    let mut text = format!("#{number}");
    for _ in 0..5 + rng.below(20) {
        text.push(' ');
        text.push_str(WORDS[rng.below(WORDS.len())]);
    }
    text
}

/// Loads `file` into the empty store at `database_url` with the admin tool.
pub async fn import(replay_tool: &Path, database_url: &str, file: &Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(replay_tool)
        .arg("import")
        .arg(file)
        .env("DATABASE_URL", database_url)
        .status()
        .await
        .with_context(|| format!("running {}", replay_tool.display()))?;
    ensure!(status.success(), "minitwit-replay import failed ({status})");
    Ok(())
}

/// The export file being written, one JSON line per event in log order.
struct Log {
    writer: BufWriter<std::fs::File>,
    position: i64,
}

impl Log {
    fn new(file: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            writer: BufWriter::new(std::fs::File::create(file)?),
            position: 0,
        })
    }

    fn user_event(
        &mut self,
        user: usize,
        sequence: i64,
        at: DateTime<Utc>,
        event: &UserEvent,
    ) -> anyhow::Result<()> {
        use cqrs_es::DomainEvent as _;
        self.line(
            "user",
            &user.to_string(),
            sequence + 1,
            at,
            &event.event_type(),
            &event.event_version(),
            &serde_json::to_string(event)?,
        )
    }

    fn message_posted(
        &mut self,
        number: usize,
        at: DateTime<Utc>,
        event: &MessageEvent,
    ) -> anyhow::Result<()> {
        use cqrs_es::DomainEvent as _;
        let id = uuid::Uuid::from_u64_pair(0x6265_6e63_686d_6172, number as u64);
        self.line(
            "message",
            &id.to_string(),
            1,
            at,
            &event.event_type(),
            &event.event_version(),
            &serde_json::to_string(event)?,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        at: DateTime<Utc>,
        event_type: &str,
        event_version: &str,
        payload: &str,
    ) -> anyhow::Result<()> {
        self.position += 1;
        let recorded_at = at.to_rfc3339();
        let line = serde_json::json!({
            "global_position": self.position,
            "transaction_id": 1,
            "recorded_at": recorded_at,
            "aggregate_type": aggregate_type,
            "aggregate_id": aggregate_id,
            "sequence": sequence,
            "event_type": event_type,
            "event_version": event_version,
            "payload_text": payload,
            "metadata_text": serde_json::json!({"received_at": recorded_at}).to_string(),
        });
        serde_json::to_writer(&mut self.writer, &line)?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<usize> {
        self.writer.flush()?;
        Ok(self.position as usize)
    }
}
