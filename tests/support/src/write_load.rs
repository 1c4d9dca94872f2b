//! Simulator-shaped write load for fault tests: concurrent clients registering, tweeting,
//! following and unfollowing with unique payloads, a ledger of every answer, and the checks
//! that what the server acknowledged survived the fault.
//!
//! Each client sends one request after another, as the simulator does, and stops at the first
//! request the server does not answer at all (it was killed). Client 0 alone sends `latest`,
//! from 1 upwards, so the stored value can be checked against what it was told: with several
//! clients sending it, "the last one stored" would have no checkable meaning.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::sim_client::{authored, describe_failure, follow_names, SimClient};

/// Longer than any answer should take, so that a hang shows up as a slow answer in the
/// ledger (and fails the checks) instead of stopping the client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause after a 503 before a client's next request.
const REFUSAL_PACING: Duration = Duration::from_millis(10);

/// One write a client sent.
#[derive(Debug, Clone)]
pub enum Write {
    Register { user: String },
    Tweet { user: String, content: String },
    Follow { user: String, target: String },
    Unfollow { user: String, target: String },
}

/// What came back for one write.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(StatusCode, Value),
    /// No answer at all: the connection failed or timed out.
    Unanswered(String),
}

/// One request of the load and its answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub write: Write,
    pub latest: Option<i64>,
    pub sent_at: Instant,
    pub elapsed: Duration,
    pub answer: Answer,
}

impl Attempt {
    pub fn acknowledged(&self) -> bool {
        matches!(self.answer, Answer::Status(StatusCode::NO_CONTENT, _))
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self.answer {
            Answer::Status(status, _) => Some(status),
            Answer::Unanswered(_) => None,
        }
    }

    pub fn answered_at(&self) -> Instant {
        self.sent_at + self.elapsed
    }
}

/// Clients writing until stopped.
pub struct WriteLoad {
    stop: CancellationToken,
    acknowledged: Arc<AtomicUsize>,
    clients: Vec<tokio::task::JoinHandle<Vec<Attempt>>>,
}

impl WriteLoad {
    /// Starts `clients` clients against the simulator API at `base_url`.
    pub fn start(base_url: &str, clients: usize) -> Self {
        let stop = CancellationToken::new();
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let clients = (0..clients)
            .map(|client| {
                let script = Script {
                    client,
                    sim: SimClient::with_timeout(base_url, REQUEST_TIMEOUT),
                    stop: stop.clone(),
                    acknowledged: acknowledged.clone(),
                };
                tokio::spawn(script.run())
            })
            .collect();
        Self {
            stop,
            acknowledged,
            clients,
        }
    }

    /// Writes acknowledged so far, by all clients.
    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits until `count` writes have been acknowledged in all; panics after `timeout`.
    pub async fn await_acknowledged(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acknowledged() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} writes acknowledged within {timeout:?}",
                self.acknowledged()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients after their current request and returns every attempt.
    pub async fn stop(self) -> Ledger {
        self.stop.cancel();
        let mut attempts = Vec::new();
        for client in self.clients {
            attempts.extend(client.await.expect("a load client"));
        }
        attempts.sort_by_key(|attempt| attempt.sent_at);
        Ledger { attempts }
    }
}

/// One client's sequence of writes: a new user, a tweet by it, a follow of one of the
/// client's earlier users, and every other round an unfollow of that same pair — so some
/// follows stay and some go. Only users whose registration was acknowledged are used.
struct Script {
    client: usize,
    sim: SimClient,
    stop: CancellationToken,
    acknowledged: Arc<AtomicUsize>,
}

impl Script {
    async fn run(self) -> Vec<Attempt> {
        let mut attempts = Vec::new();
        let mut users: Vec<String> = Vec::new();
        let mut latest = 0;
        for round in 0.. {
            let mut writes = vec![Write::Register {
                user: format!("c{} u{round}", self.client),
            }];
            if let Some(user) = users.last() {
                writes.push(Write::Tweet {
                    user: user.clone(),
                    content: format!("c{} tweet {round} by {user}", self.client),
                });
                let target = users[round % users.len()].clone();
                writes.push(Write::Follow {
                    user: user.clone(),
                    target: target.clone(),
                });
                if round % 2 == 0 {
                    writes.push(Write::Unfollow {
                        user: user.clone(),
                        target,
                    });
                }
            }
            for write in writes {
                if self.stop.is_cancelled() {
                    return attempts;
                }
                let latest = (self.client == 0).then(|| {
                    latest += 1;
                    latest
                });
                let attempt = self.send(write, latest).await;
                if attempt.acknowledged() {
                    self.acknowledged.fetch_add(1, Ordering::Relaxed);
                    if let Write::Register { user } = &attempt.write {
                        users.push(user.clone());
                    }
                }
                let status = attempt.status();
                attempts.push(attempt);
                match status {
                    None => return attempts,
                    // Paced, or six clients would spin on instant 503s and starve the tests
                    // running beside this one of CPU; a hundred refusals a second each are
                    // samples enough.
                    Some(StatusCode::SERVICE_UNAVAILABLE) => {
                        tokio::time::sleep(REFUSAL_PACING).await;
                    }
                    Some(_) => {}
                }
            }
        }
        unreachable!("the rounds never end")
    }

    async fn send(&self, write: Write, latest: Option<i64>) -> Attempt {
        let sent_at = Instant::now();
        let reply = match &write {
            Write::Register { user } => self.sim.register(user, "x@x", "pwd", latest).await,
            Write::Tweet { user, content } => self.sim.tweet(user, content, latest).await,
            Write::Follow { user, target } => self.sim.follow(user, target, latest).await,
            Write::Unfollow { user, target } => self.sim.unfollow(user, target, latest).await,
        };
        let elapsed = sent_at.elapsed();
        let answer = match reply {
            Ok(reply) => Answer::Status(reply.status, reply.body),
            Err(err) => Answer::Unanswered(describe_failure(&err, elapsed)),
        };
        Attempt {
            write,
            latest,
            sent_at,
            elapsed,
            answer,
        }
    }
}

/// Every attempt of a load, in the order they were sent.
pub struct Ledger {
    pub attempts: Vec<Attempt>,
}

impl Ledger {
    /// The ledger as it stood at `cutoff`: an attempt not answered by then counts as
    /// unanswered (it may or may not have taken effect), whatever came back later.
    pub fn as_of(&self, cutoff: Instant) -> Ledger {
        let attempts = self
            .attempts
            .iter()
            .map(|attempt| {
                let mut attempt = attempt.clone();
                if attempt.answered_at() >= cutoff {
                    attempt.answer = Answer::Unanswered("in flight at the cut-off".to_owned());
                }
                attempt
            })
            .collect();
        Ledger { attempts }
    }

    /// The acknowledged writes.
    pub fn acknowledged(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|attempt| attempt.acknowledged())
    }

    /// Asserts that every acknowledged write is in the views (through the API) and, for
    /// registrations and tweets, in the event log exactly once. Returns how many were checked.
    /// A follow or unfollow is checked when it was the last attempt on its pair: after a later
    /// attempt that failed, whether that one took effect is unknown.
    pub async fn assert_acknowledged_present(&self, sim: &SimClient, pool: &PgPool) -> usize {
        let mut checked = 0;
        let mut last_on_pair: BTreeMap<(&str, &str), &Attempt> = BTreeMap::new();
        let mut tweets_by_user: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for attempt in &self.attempts {
            match &attempt.write {
                Write::Follow { user, target } | Write::Unfollow { user, target } => {
                    last_on_pair.insert((user.as_str(), target.as_str()), attempt);
                }
                Write::Tweet { user, content } if attempt.acknowledged() => {
                    tweets_by_user.entry(user).or_default().push(content);
                }
                Write::Register { user } if attempt.acknowledged() => {
                    assert_eq!(
                        events_of(pool, "user", user, "UserRegistered").await,
                        1,
                        "the acknowledged registration of {user:?} is in the log once"
                    );
                    let follows = sim.follows(user, None, None).await.expect("GET /fllws");
                    assert_eq!(
                        follows.status,
                        StatusCode::OK,
                        "the acknowledged user {user:?} exists"
                    );
                    checked += 1;
                }
                _ => {}
            }
        }
        let posted = crate::log::opened_events(pool, "MessagePosted").await;
        for (user, contents) in tweets_by_user {
            let listing = sim
                .user_msgs(user, Some(-1), None)
                .await
                .expect("GET /msgs");
            let shown: Vec<String> = authored(&listing.body)
                .into_iter()
                .map(|(_, content)| content)
                .collect();
            for content in contents {
                assert!(
                    shown.iter().any(|shown| shown == content),
                    "the acknowledged tweet {content:?} is listed for {user:?}"
                );
                let logged = posted
                    .iter()
                    .filter(|event| event.fields["content"] == *content)
                    .count();
                assert_eq!(
                    logged, 1,
                    "the acknowledged tweet {content:?} is logged once"
                );
                checked += 1;
            }
        }
        for ((user, target), attempt) in last_on_pair {
            if !attempt.acknowledged() {
                continue;
            }
            let follows = sim.follows(user, Some(-1), None).await.expect("GET /fllws");
            let following = follow_names(&follows.body)
                .iter()
                .any(|name| name == target);
            let expected = matches!(attempt.write, Write::Follow { .. });
            assert_eq!(
                following, expected,
                "{user:?} following {target:?} after an acknowledged {:?}",
                attempt.write
            );
            checked += 1;
        }
        checked
    }

    /// Asserts that `/latest` holds a value client 0 sent, no older than the one of its last
    /// acknowledged write (whose commit made everything before it durable).
    pub async fn assert_latest_intact(&self, sim: &SimClient) -> i64 {
        let sent: Vec<&Attempt> = self
            .attempts
            .iter()
            .filter(|attempt| attempt.latest.is_some())
            .collect();
        let last_acknowledged = sent
            .iter()
            .filter(|attempt| attempt.acknowledged())
            .filter_map(|attempt| attempt.latest)
            .max()
            .expect("client 0 had a write acknowledged");
        let stored = sim.latest().await.expect("GET /latest");
        assert!(
            sent.iter().any(|attempt| attempt.latest == Some(stored)),
            "/latest holds {stored}, which was never sent"
        );
        assert!(
            stored >= last_acknowledged,
            "/latest holds {stored}, older than {last_acknowledged} of an acknowledged write"
        );
        stored
    }
}

/// How many events of `event_type` the stream `aggregate_type`/`aggregate_id` holds.
async fn events_of(
    pool: &PgPool,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(event_type)
    .fetch_one(pool)
    .await
    .expect("counting a stream's events")
}
