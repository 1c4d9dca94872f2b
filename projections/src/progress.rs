//! Every replica's knowledge of which version of each projection it serves, how far each
//! version it keeps up has got, and the wait for that.
//!
//! A projection can have several versions side by side (blue/green rebuilds, see
//! [`crate::supervisor`]). Per projection this process
//! - **reads** one version — the one its queries use ([`Progress::schema`]);
//! - **tracks** one or, while it moves to a newly activated version, two: the versions whose
//!   projectors it runs and whose checkpoints a write waits for.
//!
//! A write must not be acknowledged before the views that serve reads include it (read your
//! writes), whichever replica's projector applies it. Each tracked version has a `watch`
//! channel holding its checkpoint, fed by this replica's own projectors after each commit and,
//! for every replica, by the `minitwit_projection_progress` notification the checkpoint table
//! sends on update. A waiter also re-reads the checkpoint now and then, so a notification lost
//! to a dropped connection costs latency, never correctness.
//!
//! It also carries appends to the projectors: the newest position of each aggregate type
//! (announced by this process's writers and by every replica's notification), and the newest
//! events this process's writers appended, handed over whole so that a projector need not
//! read them back (see [`Progress::hand_over`]).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use database::event_log::{LogPosition, StoredEvent};
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Row};
use tokio::sync::{broadcast, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::projection::{schema_name, Projection};

/// The channel on which committed events are announced.
pub const EVENTS_CHANNEL: &str = "minitwit_events";
/// The channel on which checkpoint moves are announced (`projection:version:tx:position`).
pub const PROGRESS_CHANNEL: &str = "minitwit_projection_progress";
/// The channel on which version state changes are announced (`projection:version:state`).
pub const STATE_CHANNEL: &str = "minitwit_projection_state";

/// How often a waiter re-reads a checkpoint from the database when no notification came.
const RECHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The listener's first pause before reconnecting; it doubles while the database stays
/// unreachable, up to the maximum — a warning every few seconds, not a flood, and a return
/// of the database noticed within that.
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(250);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(4);

/// Shared, cheaply cloned progress tracker of this process.
#[derive(Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    projections: HashMap<&'static str, TrackedProjection>,
    /// Each registered projector's wake-up. Weak: a projector that stopped (its version was
    /// replaced) drops out of the list.
    wakers: Mutex<Vec<Weak<Notify>>>,
    /// Per aggregate type read by a projection, what is known of its appends.
    appended: HashMap<&'static str, Appended>,
    /// Bumped on every announced state change, so supervisors look at the active versions.
    states_changed: watch::Sender<u64>,
    /// Bumped whenever a transaction is known to have committed (see
    /// [`Progress::watch_commits`]).
    commits: watch::Sender<u64>,
}

/// What this process knows of the appends of one aggregate type.
#[derive(Default)]
struct Appended {
    /// The newest position announced appended.
    head: watch::Sender<LogPosition>,
    /// The newest events this process's writers appended, handed over whole (at most
    /// [`HANDED_OVER_KEPT`]): a projector applies them without reading them back, once the
    /// log shows that nothing else stands between its checkpoint and them.
    handed_over: Mutex<BTreeMap<LogPosition, StoredEvent>>,
}

/// How many handed-over events of each aggregate type are kept. Enough for every command in
/// flight at once; a projector that finds any missing reads the log instead.
const HANDED_OVER_KEPT: usize = 1024;

struct TrackedProjection {
    aggregate_type: &'static str,
    versions: Mutex<Versions>,
    /// The checkpoint of the version being read: what live pages follow. Only moves forward,
    /// across version changes too (a version is read only once it has caught up).
    serving: watch::Sender<LogPosition>,
}

struct Versions {
    reading: i32,
    tracked: BTreeMap<i32, watch::Sender<LogPosition>>,
}

impl Progress {
    /// Tracks and reads version `version()` of each of `projections` until told otherwise
    /// (see [`Progress::start_tracking`] and [`Progress::read_version`]).
    pub fn new(pool: PgPool, projections: &[Arc<dyn Projection>]) -> Self {
        let appended = projections
            .iter()
            .map(|projection| (projection.aggregate_type(), Appended::default()))
            .collect();
        let projections = projections
            .iter()
            .map(|projection| {
                let version = projection.version();
                let tracked = TrackedProjection {
                    aggregate_type: projection.aggregate_type(),
                    versions: Mutex::new(Versions {
                        reading: version,
                        tracked: BTreeMap::from([(version, watch::Sender::default())]),
                    }),
                    serving: watch::Sender::default(),
                };
                (projection.name(), tracked)
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                pool,
                projections,
                wakers: Mutex::new(Vec::new()),
                appended,
                states_changed: watch::Sender::new(0),
                commits: watch::Sender::new(0),
            }),
        }
    }

    /// A tracker of `projections` that reads their versions active in the database (or their
    /// code's versions, where none is active yet), with checkpoints loaded.
    pub async fn of_active_versions(
        pool: PgPool,
        projections: &[Arc<dyn Projection>],
    ) -> Result<Self, sqlx::Error> {
        let progress = Self::new(pool, projections);
        for projection in projections {
            if let Some(active) = progress.active_version(projection.name()).await? {
                progress.serve(projection.name(), active);
            }
        }
        progress.refresh().await?;
        Ok(progress)
    }

    fn projection(&self, name: &str) -> &TrackedProjection {
        self.inner
            .projections
            .get(name)
            .unwrap_or_else(|| panic!("projection {name} is not tracked"))
    }

    fn versions(&self, name: &str) -> MutexGuard<'_, Versions> {
        self.projection(name)
            .versions
            .lock()
            .expect("projection versions poisoned")
    }

    /// The version of `projection` this process reads.
    pub fn reading_version(&self, projection: &str) -> i32 {
        self.versions(projection).reading
    }

    /// The schema this process reads `projection` from.
    pub fn schema(&self, projection: &str) -> String {
        schema_name(projection, self.reading_version(projection))
    }

    /// The versions of `projection` this process keeps up and waits for.
    pub fn tracked_versions(&self, projection: &str) -> Vec<i32> {
        self.versions(projection).tracked.keys().copied().collect()
    }

    /// From now on, writes also wait for `version` of `projection` (a version being moved to).
    pub fn start_tracking(&self, projection: &str, version: i32) {
        self.versions(projection)
            .tracked
            .entry(version)
            .or_default();
    }

    /// Keeps only `version` of `projection` tracked (the one now read).
    pub fn stop_tracking_all_but(&self, projection: &str, version: i32) {
        self.versions(projection)
            .tracked
            .retain(|&tracked, _| tracked == version);
    }

    /// Reads `version` of `projection` from now on. It must be tracked and caught up.
    pub fn read_version(&self, projection: &str, version: i32) {
        let tracked = self.projection(projection);
        let checkpoint = {
            let mut versions = self.versions(projection);
            versions.reading = version;
            versions
                .tracked
                .get(&version)
                .map(|sender| *sender.borrow())
        };
        if let Some(position) = checkpoint {
            advance(&tracked.serving, position);
        }
    }

    /// Reads `version` of `projection`, and tracks it alone: where a process starts, and where
    /// a move to a new version ends (once that version has caught up).
    pub fn serve(&self, projection: &str, version: i32) {
        self.start_tracking(projection, version);
        self.read_version(projection, version);
        self.stop_tracking_all_but(projection, version);
    }

    /// The checkpoint of `version` of `projection`, if tracked.
    pub fn checkpoint(&self, projection: &str, version: i32) -> Option<LogPosition> {
        self.versions(projection)
            .tracked
            .get(&version)
            .map(|sender| *sender.borrow())
    }

    /// Follows `version` of `projection`'s checkpoint, if tracked.
    pub fn watch_version(
        &self,
        projection: &str,
        version: i32,
    ) -> Option<watch::Receiver<LogPosition>> {
        self.versions(projection)
            .tracked
            .get(&version)
            .map(watch::Sender::subscribe)
    }

    /// Follows the checkpoint of whichever version of `projection` is being read, or `None`
    /// for a projection this process does not track.
    pub fn watch(&self, projection: &str) -> Option<watch::Receiver<LogPosition>> {
        self.inner
            .projections
            .get(projection)
            .map(|tracked| tracked.serving.subscribe())
    }

    /// Notes that `projection` at `version` has applied everything up to `position`.
    /// Checkpoints only move forward, so an older report is ignored, as is one about a
    /// version this process does not track.
    pub fn record(&self, projection: &str, version: i32, position: LogPosition) {
        self.announce_commit();
        let Some(tracked) = self.inner.projections.get(projection) else {
            return;
        };
        let reading = {
            let versions = tracked
                .versions
                .lock()
                .expect("projection versions poisoned");
            let Some(sender) = versions.tracked.get(&version) else {
                return;
            };
            advance(sender, position);
            versions.reading == version
        };
        if reading {
            advance(&tracked.serving, position);
        }
    }

    /// A handle that [`Progress::wake_projectors`] will notify.
    pub fn register_waker(&self) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        let mut wakers = self.inner.wakers.lock().expect("waker list poisoned");
        wakers.retain(|waker| waker.strong_count() > 0);
        wakers.push(Arc::downgrade(&notify));
        notify
    }

    /// Tells this process's projectors that new events may be there, whatever they read and
    /// wherever they stand (after a gap in the notifications, when nobody knows what was
    /// missed).
    pub fn wake_projectors(&self) {
        self.announce_commit();
        for waker in self
            .inner
            .wakers
            .lock()
            .expect("waker list poisoned")
            .iter()
        {
            if let Some(notify) = waker.upgrade() {
                notify.notify_one();
            }
        }
    }

    /// Changes whenever a transaction that can hold back the transaction horizon is known to
    /// have ended: an append (here or, by notification, on any replica) or a projector's
    /// batch (likewise). A projector that found committed events held back above the horizon
    /// waits for this rather than polling: the transaction in the way is usually one of those.
    pub fn watch_commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    fn announce_commit(&self) {
        self.inner.commits.send_modify(|count| *count += 1);
    }

    /// Announces that events of `aggregate_type` up to `position` were committed: by a
    /// writer in this process the moment its append returns, or by another replica's,
    /// through the append notification. The projectors of that type run a batch if they
    /// stand behind it, and only then: the notification of an append whose writer already
    /// woke them here would otherwise cost an empty batch per write.
    pub fn announce_appended(&self, aggregate_type: &str, position: LogPosition) {
        self.announce_commit();
        if let Some(appended) = self.inner.appended.get(aggregate_type) {
            appended.head.send_if_modified(|head| {
                let newer = position > *head;
                if newer {
                    *head = position;
                }
                newer
            });
        }
    }

    /// Announces `events` of `aggregate_type`, just appended and committed by a writer in
    /// this process, and keeps them for the projectors of that type (see
    /// [`Progress::handed_over_after`]).
    pub fn hand_over(&self, aggregate_type: &str, events: Vec<StoredEvent>) {
        let Some(last) = events.last().map(|event| event.position) else {
            return;
        };
        if let Some(appended) = self.inner.appended.get(aggregate_type) {
            let mut kept = appended
                .handed_over
                .lock()
                .expect("handed-over events poisoned");
            kept.extend(events.into_iter().map(|event| (event.position, event)));
            while kept.len() > HANDED_OVER_KEPT {
                kept.pop_first();
            }
        }
        self.announce_appended(aggregate_type, last);
    }

    /// The first `limit` events of `aggregate_type` handed over by this process's writers
    /// after `checkpoint`, in log order. Only what this process wrote and still keeps: other
    /// writers' events may stand between them, which the projector's commit checks.
    pub fn handed_over_after(
        &self,
        aggregate_type: &str,
        checkpoint: LogPosition,
        limit: usize,
    ) -> Vec<StoredEvent> {
        let Some(appended) = self.inner.appended.get(aggregate_type) else {
            return Vec::new();
        };
        let kept = appended
            .handed_over
            .lock()
            .expect("handed-over events poisoned");
        kept.range((Bound::Excluded(checkpoint), Bound::Unbounded))
            .take(limit)
            .map(|(_, event)| event.clone())
            .collect()
    }

    /// The newest position announced for `aggregate_type` ([`Progress::announce_appended`]).
    pub fn watch_appended(&self, aggregate_type: &str) -> Option<watch::Receiver<LogPosition>> {
        self.inner
            .appended
            .get(aggregate_type)
            .map(|appended| appended.head.subscribe())
    }

    /// Changes whenever a version's state changes somewhere (a notification arrived).
    pub fn watch_states(&self) -> watch::Receiver<u64> {
        self.inner.states_changed.subscribe()
    }

    fn announce_state_change(&self) {
        self.inner.states_changed.send_modify(|count| *count += 1);
    }

    /// The active version of `projection` in the database, if any.
    pub async fn active_version(&self, projection: &str) -> Result<Option<i32>, sqlx::Error> {
        active_version(&self.inner.pool, projection).await
    }

    /// Re-reads every tracked checkpoint from the database.
    pub async fn refresh(&self) -> Result<(), sqlx::Error> {
        for name in self.inner.projections.keys() {
            for version in self.tracked_versions(name) {
                self.refresh_one(name, version).await?;
            }
        }
        Ok(())
    }

    async fn refresh_one(&self, projection: &str, version: i32) -> Result<(), sqlx::Error> {
        let row = sqlx::query(
            "SELECT last_tx::text::bigint AS last_tx, last_position FROM projection_checkpoints \
             WHERE projection = $1 AND version = $2",
        )
        .bind(projection)
        .bind(version)
        .fetch_optional(&self.inner.pool)
        .await?;
        if let Some(row) = row {
            let position = LogPosition {
                transaction_id: row.try_get("last_tx")?,
                global_position: row.try_get("last_position")?,
            };
            self.record(projection, version, position);
        }
        Ok(())
    }

    /// Waits until every tracked version of every view fed by `aggregate_type` has applied
    /// the event at `position`, or `timeout` passes. Returns whether it got there.
    ///
    /// The tracked versions can change during the wait (this process moving to a rebuilt
    /// version): a version that stops being tracked ends its wait, and the wait goes on with
    /// the versions tracked then — the new one is tracked before the old one is let go.
    pub async fn wait_until_applied(
        &self,
        aggregate_type: &str,
        position: LogPosition,
        timeout: Duration,
    ) -> Result<bool, sqlx::Error> {
        let deadline = Instant::now() + timeout;
        for (name, projection) in &self.inner.projections {
            if projection.aggregate_type != aggregate_type {
                continue;
            }
            'tracked: loop {
                for version in self.tracked_versions(name) {
                    let Some(mut checkpoint) = self.watch_version(name, version) else {
                        continue 'tracked; // let go meanwhile: look at what is tracked now
                    };
                    while *checkpoint.borrow_and_update() < position {
                        let now = Instant::now();
                        if now >= deadline {
                            return Ok(false);
                        }
                        let pause = RECHECK_INTERVAL.min(deadline - now);
                        match tokio::time::timeout(pause, checkpoint.changed()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => continue 'tracked,
                            Err(_) => self.refresh_one(name, version).await?,
                        }
                    }
                }
                break;
            }
        }
        Ok(true)
    }
}

/// Moves `sender`'s checkpoint forward to `position`; never back.
fn advance(sender: &watch::Sender<LogPosition>, position: LogPosition) {
    sender.send_if_modified(|current| {
        let newer = position > *current;
        if newer {
            *current = position;
        }
        newer
    });
}

/// Listens for the log's notifications and turns them into wake-ups and progress.
pub struct ProgressListener {
    progress: Progress,
    /// Other channels heard on the same connection, and where their payloads go.
    forwarded: Vec<(&'static str, broadcast::Sender<Arc<str>>)>,
}

impl ProgressListener {
    /// A listener feeding `progress`.
    pub fn new(progress: Progress) -> Self {
        Self {
            progress,
            forwarded: Vec::new(),
        }
    }

    /// Also listens to `channel`, on the same connection (a replica holds one), and sends
    /// each payload to `to`. After a gap in the connection, when notifications may have been
    /// lost, it sends an empty payload: whoever waits for one in particular must assume it
    /// came.
    pub fn forwarding(mut self, channel: &'static str, to: broadcast::Sender<Arc<str>>) -> Self {
        self.forwarded.push((channel, to));
        self
    }

    /// Runs until `cancel` fires. Reconnects by itself, backing off while the database
    /// stays unreachable; on each (re)connection it wakes the projectors and re-reads
    /// checkpoints, since notifications sent meanwhile are lost. Without notifications
    /// everything still works, by polling, only slower.
    pub async fn run(self, cancel: CancellationToken) {
        let mut delay = RECONNECT_DELAY_MIN;
        loop {
            let lost = tokio::select! {
                () = cancel.cancelled() => return,
                lost = self.listen(&mut delay) => lost,
            };
            tracing::warn!(
                error = format!("{lost:#}"),
                retry_in_ms = delay.as_millis(),
                "no notification connection; reconnecting"
            );
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(RECONNECT_DELAY_MAX);
        }
    }

    /// Connects and handles notifications until the connection fails; returns why. Resets
    /// `delay` once connected.
    async fn listen(&self, delay: &mut Duration) -> anyhow::Error {
        let connected = async {
            let mut listener = PgListener::connect_with(&self.progress.inner.pool).await?;
            let forwarded = self.forwarded.iter().map(|(channel, _)| *channel);
            listener
                .listen_all(
                    [EVENTS_CHANNEL, PROGRESS_CHANNEL, STATE_CHANNEL]
                        .into_iter()
                        .chain(forwarded),
                )
                .await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match connected.await {
            Ok(listener) => listener,
            Err(err) => return err.into(),
        };
        *delay = RECONNECT_DELAY_MIN;
        self.catch_up_after_gap().await;
        loop {
            // `try_recv` rather than `recv`, which would reconnect by itself and hide the gap.
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    self.handle(notification.channel(), notification.payload())
                }
                Ok(None) => return anyhow::anyhow!("the connection closed"),
                Err(err) => return err.into(),
            }
        }
    }

    fn handle(&self, channel: &str, payload: &str) {
        if let Some((_, to)) = self.forwarded.iter().find(|(name, _)| *name == channel) {
            // Nobody listening is no error: no stream waits for it.
            let _ = to.send(Arc::from(payload));
            return;
        }
        match channel {
            EVENTS_CHANNEL => match parse_appended(payload) {
                Some((aggregate_type, position)) => {
                    self.progress.announce_appended(aggregate_type, position)
                }
                // Not this server's format (an older one's trigger): wake them all.
                None => self.progress.wake_projectors(),
            },
            STATE_CHANNEL => self.progress.announce_state_change(),
            _ => match parse_progress(payload) {
                Some((projection, version, position)) => {
                    self.progress.record(projection, version, position)
                }
                None => tracing::warn!(payload, "unreadable progress notification"),
            },
        }
    }

    async fn catch_up_after_gap(&self) {
        for (_, to) in &self.forwarded {
            let _ = to.send(Arc::from(""));
        }
        self.progress.wake_projectors();
        self.progress.announce_state_change();
        if let Err(err) = self.progress.refresh().await {
            tracing::warn!(error = %err, "could not re-read projection checkpoints");
        }
    }
}

/// Reads an append notification: `aggregate_type:tx:position`, the last event of that type
/// a statement appended.
fn parse_appended(payload: &str) -> Option<(&str, LogPosition)> {
    let (aggregate_type, position) = payload.split_once(':')?;
    Some((aggregate_type, LogPosition::parse(position)?))
}

/// Reads a progress notification: `projection:version:tx:position`.
fn parse_progress(payload: &str) -> Option<(&str, i32, LogPosition)> {
    let mut parts = payload.splitn(3, ':');
    let projection = parts.next()?;
    let version = parts.next()?.parse().ok()?;
    let position = LogPosition::parse(parts.next()?)?;
    Some((projection, version, position))
}

/// The active version of `projection`, if it has one.
pub async fn active_version(pool: &PgPool, projection: &str) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT version FROM projection_checkpoints WHERE projection = $1 AND state = 'active'",
    )
    .bind(projection)
    .fetch_optional(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_notifications_parse() {
        assert_eq!(
            parse_appended("user:812:45"),
            Some((
                "user",
                LogPosition {
                    transaction_id: 812,
                    global_position: 45
                }
            ))
        );
        assert_eq!(parse_appended(""), None);
        assert_eq!(parse_appended("user:812"), None);
    }

    #[test]
    fn progress_notifications_parse() {
        assert_eq!(
            parse_progress("timeline:2:812:45"),
            Some((
                "timeline",
                2,
                LogPosition {
                    transaction_id: 812,
                    global_position: 45
                }
            ))
        );
        assert_eq!(parse_progress("timeline:x:812:45"), None);
        assert_eq!(parse_progress("timeline:2:812"), None);
    }
}
