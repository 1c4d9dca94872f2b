//! The command side's event store: cqrs-es's [`EventStore`] over the `events` table, with
//! aggregates kept between commands and each command appended in one statement.
//!
//! **Loading.** An aggregate's state stays in this process after its command, in a cache
//! bounded by the number of events the cached states hold. The next command on the stream
//! takes the state out and reads only the events it has missed (`sequence` past the cached
//! one): written by another replica, or by an earlier command of this one that raced it. So
//! a command reads one short range of the primary key, however long its stream is, and
//! decides on the stream's current state, cache or not. A state is *taken*, not copied, so
//! two commands of one stream at once on one replica simply have the second read the whole
//! stream; and a refused command's state (cqrs-es may have applied part of it) is dropped.
//!
//! **Appending.** [`event_log::append`] inserts the command's events only if the stream
//! still ends where the decision found it, and returns where they stand in the log — one
//! round trip, one durable commit, no second lookup for read your writes. A stream that
//! moved in between (another replica wrote) is an [`AggregateError::AggregateConflict`], and
//! the bus decides again on the new state.
//!
//! **Personal data.** Each event's personal fields (the domain says which, and whose: see
//! [`domain::personal_data`]) are sealed with their owner's data key before the append, bound
//! to the event's place in its stream. The write model decides nothing on personal data, so
//! streams are read back with those fields blank, unopened: loading an aggregate needs no key.
//!
//! **Reporting.** cqrs-es's `execute` returns nothing, but the bus needs to know where the
//! stream stood after the command (to wait for the views) and whether anything was written
//! (the simulator's `latest` rides along with a write). [`report_commit`] runs a command
//! with a [`CommitReport`] that [`EventStore::commit`] fills in, through a task-local.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use database::event_log::{self, LogPosition, NewEvent, StoredEvent, StreamEvent};
use database::keyring::{KeyError, Keyring};
use database::sealing::{self, EventIdentity};
use domain::PersonalData;
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use sqlx::PgPool;

/// What the store did with the command being executed, read by the bus afterwards.
#[derive(Debug, Clone, Default)]
pub struct CommitReport {
    /// The simulator's `latest`, to store with the command's events if it writes any.
    pub latest: Option<i64>,
    /// The events the command appended (with which it stored `latest`), as the log holds
    /// them; empty if it appended none.
    pub appended: Vec<StoredEvent>,
    /// Where the stream's newest event stands in the log after the command: what the views
    /// must reach for the client to read its write, or the state it confirmed.
    pub newest: Option<LogPosition>,
}

tokio::task_local! {
    static REPORT: RefCell<CommitReport>;
}

/// Runs `command` (an `execute` of a framework on an [`AggregateStore`]) and returns its
/// result with what the store's commit reported; `latest` is handed to the append.
pub async fn report_commit<T>(
    latest: Option<i64>,
    command: impl std::future::Future<Output = T>,
) -> (T, CommitReport) {
    let report = RefCell::new(CommitReport {
        latest,
        ..CommitReport::default()
    });
    REPORT
        .scope(report, async {
            let result = command.await;
            (result, REPORT.with(|report| report.take()))
        })
        .await
}

/// Fills in the running command's report, if it has one (tests may commit without).
fn report(fill: impl FnOnce(&mut CommitReport)) {
    let _ = REPORT.try_with(|report| fill(&mut report.borrow_mut()));
}

/// The `latest` the running command carries, if any.
fn latest_to_store() -> Option<i64> {
    REPORT
        .try_with(|report| report.borrow().latest)
        .ok()
        .flatten()
}

/// A stream's state as its last command left it.
#[derive(Clone)]
struct CachedStream<A> {
    aggregate: A,
    /// The sequence of the stream's last event folded into `aggregate` (0: none).
    sequence: i64,
    /// Where that event stands in the log.
    newest: Option<LogPosition>,
    /// Whether a command may decide on this state without reading the stream first: only
    /// for a stream the caller declared new ([`AggregateStore::expect_new`]), and only once.
    trusted: bool,
}

/// Weighs a cached state by its events, a fair proxy for its memory: a user who follows
/// ten thousand people holds ten thousand names.
#[derive(Clone)]
struct ByEvents;

impl<A> Weighter<String, CachedStream<A>> for ByEvents {
    fn weight(&self, _id: &String, stream: &CachedStream<A>) -> u64 {
        stream.sequence.max(1).unsigned_abs()
    }
}

/// An aggregate loaded for one command: the state, and where its stream ended.
pub struct StreamContext<A> {
    aggregate_id: String,
    stream: CachedStream<A>,
}

impl<A: Aggregate> AggregateContext<A> for StreamContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.stream.aggregate
    }
}

/// cqrs-es's event store on the `events` table, for aggregates of type `A`. A handle:
/// clones share one cache (the bus's framework and the directory's reads of user states).
pub struct AggregateStore<A: Aggregate> {
    inner: Arc<Inner<A>>,
}

struct Inner<A: Aggregate> {
    pool: PgPool,
    keys: Keyring,
    cache: Cache<String, CachedStream<A>, ByEvents>,
    upcasters: Vec<Box<dyn EventUpcaster>>,
}

impl<A: Aggregate> Clone for AggregateStore<A> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<A: Aggregate + Clone> AggregateStore<A>
where
    A::Event: PersonalData,
{
    /// A store on `pool`, sealing with `keys`, keeping states of up to `cached_events` events
    /// in all.
    pub fn new(pool: PgPool, keys: Keyring, cached_events: u64) -> Self {
        // The estimate only sizes the first allocation; streams average a few events.
        let estimated_streams = usize::try_from(cached_events / 4).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Inner {
                pool,
                keys,
                cache: Cache::with_weighter(
                    estimated_streams.max(16),
                    cached_events.max(1),
                    ByEvents,
                ),
                upcasters: domain::upcasting::upcasters(),
            }),
        }
    }

    /// The current state of `aggregate_id`'s stream, or `None` if it has not begun, read
    /// through the cache like a command's (and left there for the next).
    pub async fn current<T>(
        &self,
        aggregate_id: &str,
        read: impl FnOnce(&A) -> T,
    ) -> Result<Option<T>, AggregateError<A::Error>> {
        let stream = self.take_current(aggregate_id).await?;
        if stream.sequence == 0 {
            return Ok(None);
        }
        let answer = read(&stream.aggregate);
        self.inner.cache.insert(aggregate_id.to_owned(), stream);
        Ok(Some(answer))
    }

    /// Declares `aggregate_id`'s stream new: the next command on it decides on the empty
    /// state without reading the stream, saving a round trip. For a stream whose id was
    /// just made up (a new message), and safe for any command whose decision on an empty
    /// state either appends — which happens only if the stream really is empty, or else is a
    /// conflict, and the command is decided again on the stream as read — or refuses for a
    /// reason the stream does not hold (an unknown author). A stream this replica already
    /// keeps is left as kept.
    pub fn expect_new(&self, aggregate_id: &str) {
        if !self.inner.cache.contains_key(aggregate_id) {
            self.inner.cache.insert(
                aggregate_id.to_owned(),
                CachedStream {
                    aggregate: A::default(),
                    sequence: 0,
                    newest: None,
                    trusted: true,
                },
            );
        }
    }

    /// The stream's state taken out of the cache (or a fresh one), brought up to date.
    async fn take_current(
        &self,
        aggregate_id: &str,
    ) -> Result<CachedStream<A>, AggregateError<A::Error>> {
        let (mut stream, outcome) = match self.inner.cache.remove(aggregate_id) {
            Some((_, cached)) => (cached, "hit"),
            None => (
                CachedStream {
                    aggregate: A::default(),
                    sequence: 0,
                    newest: None,
                    trusted: false,
                },
                "miss",
            ),
        };
        if std::mem::take(&mut stream.trusted) {
            return Ok(stream);
        }
        metrics::counter!(
            "minitwit_aggregate_cache_lookups_total",
            "aggregate" => A::TYPE, "outcome" => outcome
        )
        .increment(1);
        for (position, envelope) in self.read_after(aggregate_id, stream.sequence).await? {
            stream.sequence = i64::try_from(envelope.sequence).expect("sequences fit in i64");
            stream.newest = Some(position);
            stream.aggregate.apply(envelope.payload);
        }
        Ok(stream)
    }

    /// The events of `aggregate_id`'s stream after `after_sequence`, decoded and upcast, with
    /// their places in the log.
    async fn read_after(
        &self,
        aggregate_id: &str,
        after_sequence: i64,
    ) -> Result<Vec<(LogPosition, EventEnvelope<A>)>, AggregateError<A::Error>> {
        let events =
            event_log::stream_after(&self.inner.pool, A::TYPE, aggregate_id, after_sequence)
                .await
                .map_err(database_error)?;
        events
            .into_iter()
            .map(|event| {
                let position = event.position;
                let envelope = decode::<A>(aggregate_id, event, &self.inner.upcasters)
                    .map_err(|err| AggregateError::DeserializationError(err.into()))?;
                Ok((position, envelope))
            })
            .collect()
    }
}

impl<A: Aggregate + Clone> EventStore<A> for AggregateStore<A>
where
    A::Event: PersonalData,
{
    type AC = StreamContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        Ok(self
            .read_after(aggregate_id, 0)
            .await?
            .into_iter()
            .map(|(_, envelope)| envelope)
            .collect())
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<StreamContext<A>, AggregateError<A::Error>> {
        Ok(StreamContext {
            aggregate_id: aggregate_id.to_owned(),
            stream: self.take_current(aggregate_id).await?,
        })
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: StreamContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let StreamContext {
            aggregate_id,
            mut stream,
        } = context;
        if events.is_empty() {
            report(|report| report.newest = stream.newest);
            self.inner.cache.insert(aggregate_id, stream);
            return Ok(Vec::new());
        }
        let stored_metadata = serde_json::to_value(&metadata)
            .map_err(|err| AggregateError::UnexpectedError(err.into()))?;
        let mut new_events = Vec::with_capacity(events.len());
        for (event, sequence) in events.iter().zip(stream.sequence + 1..) {
            let mut payload = serde_json::to_value(event)
                .map_err(|err| AggregateError::UnexpectedError(err.into()))?;
            self.seal(&mut payload, event, &aggregate_id, sequence)
                .await?;
            new_events.push(NewEvent {
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload,
                metadata: stored_metadata.clone(),
            });
        }
        let appended = event_log::append(
            &self.inner.pool,
            A::TYPE,
            &aggregate_id,
            stream.sequence,
            new_events,
            latest_to_store(),
        )
        .await
        .map_err(database_error)?;
        // The stream moved on since it was read: the state is dropped, and the next load
        // reads the stream afresh.
        let appended = appended.ok_or(AggregateError::AggregateConflict)?;
        let through = appended.last().map(|event| event.position);
        let first_sequence = stream.sequence + 1;
        stream.sequence += i64::try_from(events.len()).expect("a command's events fit in i64");
        stream.newest = through;
        report(|report| {
            report.appended = appended;
            report.newest = through;
        });
        // The aggregate has applied the events already (cqrs-es applies them as they are
        // written); it goes back to the cache as the state after them.
        self.inner.cache.insert(aggregate_id.clone(), stream);
        Ok(events
            .into_iter()
            .zip(first_sequence..)
            .map(|(payload, sequence)| EventEnvelope {
                aggregate_id: aggregate_id.clone(),
                sequence: usize::try_from(sequence).expect("sequences are positive"),
                payload,
                metadata: metadata.clone(),
            })
            .collect())
    }
}

impl<A: Aggregate + Clone> AggregateStore<A>
where
    A::Event: PersonalData,
{
    /// Seals `event`'s personal fields in its serialised `payload`, as the `sequence`th
    /// event of `aggregate_id`'s stream.
    async fn seal(
        &self,
        payload: &mut serde_json::Value,
        event: &A::Event,
        aggregate_id: &str,
        sequence: i64,
    ) -> Result<(), AggregateError<A::Error>> {
        let fields = event.personal_fields();
        if fields.is_empty() {
            return Ok(());
        }
        let subject = event.data_subject(aggregate_id);
        let key = self
            .inner
            .keys
            .key_for_sealing(subject)
            .await
            .map_err(|err| match err {
                KeyError::Database(err) => database_error(err),
                other => AggregateError::UnexpectedError(other.into()),
            })?;
        let identity = EventIdentity {
            aggregate_type: A::TYPE,
            aggregate_id,
            sequence,
        };
        sealing::seal_fields(payload, identity, fields, subject, &key);
        Ok(())
    }
}

/// A failed statement, as cqrs-es reports it: the driver's error boxed, so that the bus can
/// tell an unreachable database from other failures.
fn database_error<E: std::error::Error>(err: sqlx::Error) -> AggregateError<E> {
    AggregateError::DatabaseConnectionError(Box::new(err))
}

/// An event of `aggregate_id`'s stream as `A`'s, upcast to its current version, with its
/// sealed fields blank.
fn decode<A: Aggregate>(
    aggregate_id: &str,
    mut event: StreamEvent,
    upcasters: &[Box<dyn EventUpcaster>],
) -> anyhow::Result<EventEnvelope<A>> {
    sealing::blank_fields(&mut event.payload);
    let serialized = SerializedEvent::new(
        aggregate_id.to_owned(),
        usize::try_from(event.sequence)?,
        A::TYPE.to_owned(),
        event.event_type,
        event.event_version,
        event.payload,
        event.metadata,
    );
    let upcast = domain::upcasting::upcast(serialized, upcasters);
    Ok(EventEnvelope::try_from(upcast)?)
}
