//! The accounts projection: who is registered, and who follows whom.
//!
//! Tables (in schema `accounts_v<version>`):
//! - `users`: one row per registered user, with what login needs (the newest password
//!   hash: a `PasswordHashUpgraded` or `PasswordChanged` replaces the registered one) and the
//!   newest email. A forgotten user keeps the row, which reserves the name, with `forgotten`
//!   set and the email and hash emptied.
//! - `follows`: one row per current follow; `position` is the log position of the follow,
//!   which orders a user's follows oldest first.
//!
//! A batch is reduced in memory to what it leaves behind per user and per followed pair
//! (see `PairChange`), then written with one set-based statement per kind of change.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use cqrs_es::persist::EventUpcaster;
use database::event_log::StoredEvent;
use domain::{User, UserEvent};

use crate::log::Decode as _;
use crate::projection::{Projection, ViewChange, CLAIM_HELD};

/// Users and follows, from the `user` aggregate's events.
pub struct Accounts;

impl Projection for Accounts {
    fn name(&self) -> &'static str {
        "accounts"
    }

    /// 2: `users.forgotten`, email changes, and forgetting.
    fn version(&self) -> i32 {
        2
    }

    fn aggregate_type(&self) -> &'static str {
        "user"
    }

    fn create_tables_sql(&self, schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.users (
                 username      text        PRIMARY KEY,
                 email         text        NOT NULL,
                 password_hash text        NOT NULL,
                 registered_at timestamptz NOT NULL,
                 position      bigint      NOT NULL,
                 forgotten     boolean     NOT NULL DEFAULT false
             );
             CREATE TABLE IF NOT EXISTS {schema}.follows (
                 follower    text        NOT NULL,
                 followee    text        NOT NULL,
                 followed_at timestamptz NOT NULL,
                 position    bigint      NOT NULL,
                 PRIMARY KEY (follower, followee)
             );"
        )
    }

    fn create_indexes_sql(&self, schema: &str) -> String {
        format!(
            "-- A user's follows, oldest first (GET /fllws/<user>).
             CREATE INDEX IF NOT EXISTS follows_by_follower
                 ON {schema}.follows (follower, position);
             -- Who follows a user (the browser's follower counts and fan-out).
             CREATE INDEX IF NOT EXISTS follows_by_followee
                 ON {schema}.follows (followee);"
        )
    }

    fn plan_batch(
        &self,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>> {
        let changes = AccountChanges::of(events, upcasters)?;
        let mut plan = Vec::new();
        let registered = &changes.registered;
        if !registered.usernames.is_empty() {
            plan.push(
                ViewChange::new(format!(
                    "INSERT INTO {schema}.users \
                         (username, email, password_hash, registered_at, position) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], \
                                          $4::timestamptz[], $5::bigint[]) \
                     WHERE {CLAIM_HELD} \
                     ON CONFLICT (username) DO NOTHING"
                ))
                .bind(&registered.usernames)
                .bind(&registered.emails)
                .bind(&registered.password_hashes)
                .bind(&registered.registered_at)
                .bind(&registered.positions),
            );
        }
        // After the insert: a change comes after its user's registration in the log (same
        // stream, later sequence), so it may be about a user of this very batch.
        for (column, newest) in [
            ("password_hash", &changes.password_hashes),
            ("email", &changes.emails),
        ] {
            if newest.is_empty() {
                continue;
            }
            let (usernames, values): (Vec<&str>, Vec<&str>) = newest
                .iter()
                .map(|(username, value)| (username.as_str(), value.as_str()))
                .unzip();
            plan.push(
                ViewChange::new(format!(
                    "UPDATE {schema}.users AS u SET {column} = n.value \
                     FROM UNNEST($1::text[], $2::text[]) AS n(username, value) \
                     WHERE u.username = n.username AND {CLAIM_HELD}"
                ))
                .bind(usernames)
                .bind(values),
            );
        }
        let (followers, followees, unfollows) = changes.follows.columns(|change| change.unfollow);
        if !followers.is_empty() {
            plan.push(
                ViewChange::new(format!(
                    "DELETE FROM {schema}.follows AS f \
                     USING UNNEST($1::text[], $2::text[], $3::bigint[]) \
                         AS u(follower, followee, position) \
                     WHERE f.follower = u.follower AND f.followee = u.followee \
                       AND f.position < u.position AND {CLAIM_HELD}"
                ))
                .bind(followers)
                .bind(followees)
                .bind(unfollows),
            );
        }
        let (followers, followees, follows) = changes.follows.columns(|change| change.follow);
        if !followers.is_empty() {
            let (positions, followed_at): (Vec<i64>, Vec<DateTime<Utc>>) = follows
                .iter()
                .map(|follow| (follow.position, follow.followed_at))
                .unzip();
            plan.push(
                ViewChange::new(format!(
                    "INSERT INTO {schema}.follows (follower, followee, followed_at, position) \
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::timestamptz[], \
                                          $4::bigint[]) \
                     WHERE {CLAIM_HELD} \
                     ON CONFLICT (follower, followee) DO NOTHING"
                ))
                .bind(followers)
                .bind(followees)
                .bind(followed_at)
                .bind(positions),
            );
        }
        if !changes.forgotten.is_empty() {
            // Last: a forgotten user's stream ends with the forgetting, and nobody may follow
            // them after it, so every follow of theirs this batch made is gone too.
            let forgotten: Vec<&str> = changes.forgotten.iter().map(String::as_str).collect();
            plan.push(
                ViewChange::new(format!(
                    "UPDATE {schema}.users SET email = '', password_hash = '', forgotten = true \
                     WHERE username = ANY($1) AND {CLAIM_HELD}"
                ))
                .bind(forgotten.clone()),
            );
            plan.push(
                ViewChange::new(format!(
                    "DELETE FROM {schema}.follows \
                     WHERE (follower = ANY($1) OR followee = ANY($1)) AND {CLAIM_HELD}"
                ))
                .bind(forgotten),
            );
        }
        Ok(plan)
    }
}

/// What a batch does to the accounts tables, reduced in memory.
#[derive(Debug, Default)]
struct AccountChanges {
    registered: RegisteredColumns,
    /// Each upgraded user's newest hash: the last upgrade in the batch, the only one
    /// sequential application would leave standing.
    password_hashes: BTreeMap<String, String>,
    /// Each user's newest email, as for the hashes.
    emails: BTreeMap<String, String>,
    follows: FollowChanges,
    /// The users the batch forgets.
    forgotten: BTreeSet<String>,
}

/// New users, column by column (the arrays the insert unnests), each username once: the
/// first registration wins, as it would with one insert per event.
#[derive(Debug, Default)]
struct RegisteredColumns {
    usernames: Vec<String>,
    emails: Vec<String>,
    password_hashes: Vec<String>,
    registered_at: Vec<DateTime<Utc>>,
    positions: Vec<i64>,
}

impl AccountChanges {
    fn of(events: &[StoredEvent], upcasters: &[Box<dyn EventUpcaster>]) -> anyhow::Result<Self> {
        let mut changes = Self::default();
        let mut seen = HashSet::new();
        for event in events {
            let envelope = event.decode::<User>(upcasters)?;
            let user = envelope.aggregate_id;
            let position = event.position.global_position;
            match envelope.payload {
                UserEvent::UserRegistered {
                    username,
                    email,
                    password_hash,
                    registered_at,
                } => {
                    if seen.insert(username.clone()) {
                        let registered = &mut changes.registered;
                        registered.usernames.push(username);
                        registered.emails.push(email);
                        registered
                            .password_hashes
                            .push(password_hash.as_str().to_owned());
                        registered.registered_at.push(registered_at);
                        registered.positions.push(position);
                    }
                }
                UserEvent::UserFollowed {
                    followee,
                    followed_at,
                } => changes.follows.followed(
                    user,
                    followee,
                    Follow {
                        position,
                        followed_at,
                    },
                ),
                UserEvent::UserUnfollowed { followee, .. } => {
                    changes.follows.unfollowed(user, followee, position);
                }
                UserEvent::PasswordHashUpgraded { password_hash, .. }
                | UserEvent::PasswordChanged { password_hash, .. } => {
                    changes
                        .password_hashes
                        .insert(user, password_hash.as_str().to_owned());
                }
                UserEvent::EmailChanged { email, .. } => {
                    changes.emails.insert(user, email);
                }
                UserEvent::UserForgotten { .. } => {
                    changes.forgotten.insert(user);
                }
                // Blocks have a view of their own (`crate::blocks`).
                UserEvent::UserBlocked { .. } | UserEvent::UserUnblocked { .. } => {}
            }
        }
        Ok(changes)
    }
}

/// A follow as the `follows` table keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Follow {
    position: i64,
    followed_at: DateTime<Utc>,
}

/// What a batch does to one `(follower, followee)` pair: first delete the pair's row if its
/// position is below `unfollow`, then insert `follow` if no row is left.
///
/// One at a time, a follow at `p` inserts the pair at `p` if it has no row, and an unfollow
/// at `p` deletes its row if the row's position is below `p` (so replaying an unfollow cannot
/// undo a later re-follow). Along one follower's stream positions only increase, so for a
/// batch with last unfollow `u` and first follow after it `f`:
/// - every row a follow before `u` inserts has a position below `u`, so it is gone after `u`;
///   a row the pair had before the batch is gone after `u` exactly when its position is
///   below `u`, since the unfollows before `u` have lower positions and delete no more than
///   `u` does. Together: one delete of a row below `u`;
/// - after `u` come only follows: the first, `f`, inserts the pair if no row is left, and the
///   rest then find one. Together: one insert of `f` that does nothing on a conflict.
///
/// Without an unfollow in the batch, only the insert of the first follow remains. This holds
/// whatever row the pair had before, so replaying a batch changes nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PairChange {
    unfollow: Option<i64>,
    follow: Option<Follow>,
}

/// The batch's [`PairChange`] of every pair it follows or unfollows.
#[derive(Debug, Default)]
struct FollowChanges {
    pairs: BTreeMap<(String, String), PairChange>,
}

impl FollowChanges {
    /// Takes in the next follow in log order.
    fn followed(&mut self, follower: String, followee: String, follow: Follow) {
        let change = self.pairs.entry((follower, followee)).or_default();
        change.follow.get_or_insert(follow);
    }

    /// Takes in the next unfollow in log order, at `position`.
    fn unfollowed(&mut self, follower: String, followee: String, position: i64) {
        let change = self.pairs.entry((follower, followee)).or_default();
        change.unfollow = Some(position);
        change.follow = None;
    }

    /// Every pair whose change has a `part`, column by column — followers, followees,
    /// parts — as the arrays a statement unnests.
    fn columns<T>(
        &self,
        part: impl Fn(&PairChange) -> Option<T>,
    ) -> (Vec<&str>, Vec<&str>, Vec<T>) {
        let mut columns = (Vec::new(), Vec::new(), Vec::new());
        for ((follower, followee), change) in &self.pairs {
            if let Some(part) = part(change) {
                columns.0.push(follower.as_str());
                columns.1.push(followee.as_str());
                columns.2.push(part);
            }
        }
        columns
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::TimeZone;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    type Pair = (String, String);

    fn follow_at(position: i64) -> Follow {
        Follow {
            position,
            followed_at: Utc.timestamp_opt(1_800_000_000 + position, 0).unwrap(),
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Followed(Pair, Follow),
        Unfollowed(Pair, i64),
    }

    /// The rows after applying `steps` one at a time, as the per-event statements did.
    fn sequentially(mut rows: HashMap<Pair, Follow>, steps: &[Step]) -> HashMap<Pair, Follow> {
        for step in steps {
            match step {
                Step::Followed(pair, follow) => {
                    rows.entry(pair.clone()).or_insert(*follow);
                }
                Step::Unfollowed(pair, position) => {
                    if rows.get(pair).is_some_and(|row| row.position < *position) {
                        rows.remove(pair);
                    }
                }
            }
        }
        rows
    }

    /// The rows after the reduced batch's delete and then insert.
    fn reduced(mut rows: HashMap<Pair, Follow>, steps: &[Step]) -> HashMap<Pair, Follow> {
        let mut changes = FollowChanges::default();
        for step in steps.iter().cloned() {
            match step {
                Step::Followed((follower, followee), follow) => {
                    changes.followed(follower, followee, follow);
                }
                Step::Unfollowed((follower, followee), position) => {
                    changes.unfollowed(follower, followee, position);
                }
            }
        }
        let (followers, followees, unfollows) = changes.columns(|change| change.unfollow);
        for ((follower, followee), below) in followers.into_iter().zip(followees).zip(unfollows) {
            let pair = (follower.to_owned(), followee.to_owned());
            if rows.get(&pair).is_some_and(|row| row.position < below) {
                rows.remove(&pair);
            }
        }
        let (followers, followees, follows) = changes.columns(|change| change.follow);
        for ((follower, followee), follow) in followers.into_iter().zip(followees).zip(follows) {
            rows.entry((follower.to_owned(), followee.to_owned()))
                .or_insert(follow);
        }
        rows
    }

    #[test]
    fn a_reduced_batch_equals_its_follows_and_unfollows_one_at_a_time() {
        let users = ["ann", "bob", "cy"];
        let pair = |rng: &mut StdRng| {
            (
                users[rng.random_range(0..users.len())].to_owned(),
                users[rng.random_range(0..users.len())].to_owned(),
            )
        };
        let mut rng = StdRng::seed_from_u64(6);
        for _ in 0..20_000 {
            let first_position = 100;
            let steps: Vec<Step> = (0..rng.random_range(0..12))
                .map(|n| {
                    let position = first_position + n;
                    if rng.random_bool(0.5) {
                        Step::Followed(pair(&mut rng), follow_at(position))
                    } else {
                        Step::Unfollowed(pair(&mut rng), position)
                    }
                })
                .collect();
            // Rows from before the batch, or (on a replay) from the batch itself or later.
            let rows: HashMap<Pair, Follow> = (0..rng.random_range(0..6))
                .map(|_| (pair(&mut rng), follow_at(rng.random_range(90..115))))
                .collect();
            assert_eq!(
                reduced(rows.clone(), &steps),
                sequentially(rows.clone(), &steps),
                "batch {steps:?} on rows {rows:?}"
            );
        }
    }

    #[test]
    fn a_refollow_after_an_unfollow_in_one_batch_keeps_the_refollow() {
        let pair = ("ann".to_owned(), "bob".to_owned());
        let steps = [
            Step::Followed(pair.clone(), follow_at(1)),
            Step::Unfollowed(pair.clone(), 2),
            Step::Followed(pair.clone(), follow_at(3)),
            Step::Followed(pair.clone(), follow_at(4)),
        ];
        let before = HashMap::from([(pair.clone(), follow_at(0))]);
        let after = reduced(before, &steps);
        assert_eq!(after, HashMap::from([(pair, follow_at(3))]));
    }
}
