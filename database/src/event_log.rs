//! The event log: every statement of ours on the `events` table, and the positions and rows
//! they return.
//!
//! Both sides of the service and the admin tool read the table, so its SQL lives here, under
//! all of them, once:
//! - the projectors' and the live feeds' catch-up reads, and how far behind the log a
//!   checkpoint is;
//! - the command side's reads of single streams: is a name registered, an aggregate's state
//!   (or what a cached one has missed), where a write stands in the log;
//! - the log as a whole — its head, count and size — for the metrics and the admin tool;
//! - the admin tool's export of the log and import into an empty one, and the legacy
//!   import's questions about streams;
//! - a person's streams and events (forgetting them, their data download, the admin tool's
//!   audit), the log as it stood at a point (`as-of`), and the owner's one rewrite: sealing
//!   personal fields an older build stored in plain text.
//!
//! - the command side's appends: one statement per command (see [`append`]).
//!
//! Tests keep their own SQL.
//!
//! **Why the log is read in `(transaction_id, global_position)` order.** A position is handed
//! out at INSERT but becomes visible at COMMIT, so ordered by position alone a reader can see
//! 7 before 6 is committed and step past 6 for good. Readers that follow the log therefore
//! order by the writing transaction first, and the projector reads only below the transaction
//! horizon (`transaction_id < pg_snapshot_xmin(pg_current_snapshot())`), where no transaction
//! still running can add a row: nothing can appear behind a checkpoint in that order.
//! `EVENT_COLUMNS` selects `transaction_id` as a bigint alias, so those reads order by the
//! qualified `events.transaction_id`, which the `(aggregate_type, transaction_id,
//! global_position)` index has; ordered by the alias, every read would sort what it selects.
//! A single stream is read by `sequence` instead: its own order, the one its aggregate decided
//! the events in, and the primary key's.
//!
//! **Executors.** Each function takes the executor its caller has: a `&mut PgConnection`
//! where the statement belongs to the caller's transaction or session (the projector's
//! locked batch, the export's snapshot, the import's table lock and its temporary table),
//! `impl PgExecutor` where a pool serves as well as a connection.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt as _};
use serde_json::Value;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments as _, PgConnection, PgExecutor, Row};

/// A place in the log, in the order catch-up readers consume it.
///
/// Ordered by transaction first: a reader only sees transactions older than every one still
/// running, so everything behind a position is final. `global_position` alone is not a safe
/// checkpoint, because a transaction can take a position and commit after a later one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The writing transaction's `xid8`, as a number.
    pub transaction_id: i64,
    /// The event's `global_position`.
    pub global_position: i64,
}

impl LogPosition {
    /// Parses the `tx:position` form used in notifications.
    pub fn parse(tx_and_position: &str) -> Option<Self> {
        let (tx, position) = tx_and_position.split_once(':')?;
        Some(Self {
            transaction_id: tx.parse().ok()?,
            global_position: position.parse().ok()?,
        })
    }

    /// Reads a row's `transaction_id` (selected as a bigint) and `global_position`.
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            transaction_id: row.try_get("transaction_id")?,
            global_position: row.try_get("global_position")?,
        })
    }
}

/// The columns of `events` in the order [`StoredEvent::from_row`] reads them. Its
/// `transaction_id` is a bigint alias: order by `events.transaction_id`, which the index has.
const EVENT_COLUMNS: &str = "global_position, transaction_id::text::bigint AS transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// One row of the event log, as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: LogPosition,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// Reads a row selected with [`EVENT_COLUMNS`].
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: LogPosition::from_row(row)?,
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

/// A projector's batch, claimed by [`claim_batch`].
#[derive(Debug)]
pub enum Claim {
    /// Another worker holds the projection's lock.
    Busy,
    /// The lock is held, but no event waits below the horizon past the checkpoint.
    /// `waiting` says whether committed events wait above it, held back by a transaction
    /// that is still open.
    Empty { waiting: bool },
    /// `events`, in log order, after the checkpoint `from`; with
    /// [`CheckpointMove::InClaim`], the checkpoint has moved from `from` to the last of
    /// them. `more` says whether committed events follow them (below the horizon, past the batch's
    /// limit, or above it, held back).
    Batch {
        from: LogPosition,
        events: Vec<StoredEvent>,
        more: bool,
    },
}

/// Which projection version a batch is claimed for, and how much of the log it may take.
#[derive(Debug, Clone, Copy)]
pub struct BatchScope<'a> {
    /// The advisory lock's name: one batch of this version at a time, across replicas.
    pub lock_name: &'a str,
    pub projection: &'a str,
    pub version: i32,
    /// The events it reads.
    pub aggregate_type: &'a str,
    /// The last position it may apply.
    pub until: LogPosition,
    pub limit: i64,
    pub checkpoint_move: CheckpointMove,
}

/// Where a batch's checkpoint moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointMove {
    /// In the claim, inside the caller's transaction, which then applies the events and
    /// commits (or rolls back, and the move with it).
    InClaim,
    /// With the batch's first change, in one statement, by [`apply_claimed`]; the claim only
    /// reads. Its lock is then held for the claim's statement alone, so a claim that finds
    /// another worker mid-batch still answers [`Claim::Busy`].
    WithChange,
}

/// A projector's batch in one statement, inside its transaction `tx`: takes the version's
/// advisory transaction lock (re-entrant), reads its checkpoint, reads the next events of its
/// type after the checkpoint and below the transaction horizon, moves the checkpoint to
/// the last of them with a compare-and-set on the value it read, and says whether committed
/// events follow (so that the projector knows, without another batch, whether to go on, to
/// wait for a transaction that holds the horizon back, or to sleep). The caller applies the
/// events in the same transaction and commits, or rolls back, and with it the move.
///
/// With [`CheckpointMove::WithChange`] the claim moves nothing and `tx` may be a connection
/// outside any transaction: [`apply_claimed`] moves the checkpoint later, with the batch.
///
/// The transaction also stops waiting for the WAL flush at commit (`synchronous_commit`
/// off): the views are derived data, their events are durable already, and a crash that
/// loses the commit loses the checkpoint's move with it, so the batch is applied again.
///
/// One round trip where it took five. A concurrent batch that committed after this
/// statement's snapshot cannot be overwritten: the compare-and-set re-reads the checkpoint
/// row it updates and finds it moved, and the claim fails (see [`Claim`] and the error).
pub async fn claim_batch(
    tx: &mut PgConnection,
    scope: BatchScope<'_>,
) -> Result<Result<Claim, CheckpointMoved>, sqlx::Error> {
    let rows = sqlx::query(CLAIM_BATCH.as_str())
        .bind(scope.lock_name)
        .bind(scope.projection)
        .bind(scope.version)
        .bind(scope.aggregate_type)
        .bind(scope.limit)
        .bind(scope.until.transaction_id)
        .bind(scope.until.global_position)
        .bind(scope.checkpoint_move == CheckpointMove::InClaim)
        .fetch_all(tx)
        .await?;
    let Some(first) = rows.first() else {
        return Err(sqlx::Error::RowNotFound);
    };
    if !first.try_get::<bool, _>("locked")? {
        return Ok(Ok(Claim::Busy));
    }
    let checkpoint = match (
        first.try_get::<Option<i64>, _>("checkpoint_tx")?,
        first.try_get::<Option<i64>, _>("checkpoint_position")?,
    ) {
        (Some(transaction_id), Some(global_position)) => LogPosition {
            transaction_id,
            global_position,
        },
        _ => return Err(sqlx::Error::RowNotFound),
    };
    let more: bool = first.try_get("beyond")?;
    if first
        .try_get::<Option<i64>, _>("global_position")?
        .is_none()
    {
        return Ok(Ok(Claim::Empty { waiting: more }));
    }
    if scope.checkpoint_move == CheckpointMove::InClaim && first.try_get::<i64, _>("moved")? != 1 {
        return Ok(Err(CheckpointMoved));
    }
    let events = rows
        .iter()
        .map(StoredEvent::from_row)
        .collect::<Result<_, _>>()?;
    Ok(Ok(Claim::Batch {
        from: checkpoint,
        events,
        more,
    }))
}

/// The statement [`claim_batch`] sends, with its parameters in this order: the lock's name,
/// the projection, its version, the aggregate type, the limit, the end's transaction id and
/// position, and whether it moves the checkpoint. For tests that look at its plan.
pub fn claim_batch_sql() -> &'static str {
    CLAIM_BATCH.as_str()
}

/// A claim found the checkpoint moved by another worker after it had read it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the checkpoint moved under this batch")]
pub struct CheckpointMoved;

/// The statement of [`claim_batch`]. Every step is a materialized CTE, each reading the one
/// before, so they run in order: settings, lock, checkpoint, events, what follows them, move. The events are
/// read in the `(aggregate_type, transaction_id, global_position)` index's order, as a range
/// starting at the checkpoint: a `LATERAL` subquery, so that the checkpoint is the outer side
/// and its values bound the index scan — joined plainly, PostgreSQL scanned every event of
/// the type and filtered them against the checkpoint afterwards. The answer always has a row: with no events, one row of
/// nulls beside the lock and the checkpoint.
static CLAIM_BATCH: LazyLock<String> = LazyLock::new(|| {
    let columns = EVENT_COLUMNS
        .split(", ")
        .map(|column| match column {
            "transaction_id::text::bigint AS transaction_id" => {
                "batch.transaction_id::text::bigint AS transaction_id".to_owned()
            }
            other => format!("batch.{other}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH settings AS MATERIALIZED ( \
             SELECT set_config('synchronous_commit', 'off', true) AS applied), \
         lock AS MATERIALIZED ( \
             SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS held FROM settings), \
         checkpoint AS MATERIALIZED ( \
             SELECT c.last_tx, c.last_position FROM projection_checkpoints c, lock \
             WHERE lock.held AND c.projection = $2 AND c.version = $3), \
         batch AS MATERIALIZED ( \
             SELECT next.* FROM checkpoint, LATERAL ( \
                 SELECT e.* FROM events e \
                 WHERE e.aggregate_type = $4 \
                   AND (e.transaction_id, e.global_position) \
                       > (checkpoint.last_tx, checkpoint.last_position) \
                   AND (e.transaction_id, e.global_position) <= ($6::bigint::text::xid8, $7) \
                   AND e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY e.transaction_id, e.global_position \
                 LIMIT $5) AS next), \
         newest AS ( \
             SELECT transaction_id, global_position FROM batch \
             ORDER BY transaction_id DESC, global_position DESC LIMIT 1), \
         after AS ( \
             SELECT coalesce(newest.transaction_id, checkpoint.last_tx) AS transaction_id, \
                    coalesce(newest.global_position, checkpoint.last_position) AS global_position \
             FROM checkpoint LEFT JOIN newest ON true), \
         beyond AS MATERIALIZED ( \
             SELECT 1 AS found FROM after, LATERAL ( \
                 SELECT 1 FROM events e \
                 WHERE e.aggregate_type = $4 \
                   AND (e.transaction_id, e.global_position) \
                       > (after.transaction_id, after.global_position) \
                   AND (e.transaction_id, e.global_position) <= ($6::bigint::text::xid8, $7) \
                 ORDER BY e.transaction_id, e.global_position \
                 LIMIT 1) AS waiting), \
         moved AS ( \
             UPDATE projection_checkpoints c \
             SET last_tx = newest.transaction_id, last_position = newest.global_position, \
                 last_error = NULL, updated_at = now() \
             FROM newest, checkpoint \
             WHERE $8 AND c.projection = $2 AND c.version = $3 \
               AND c.last_tx = checkpoint.last_tx \
               AND c.last_position = checkpoint.last_position \
             RETURNING 1) \
         SELECT (SELECT held FROM lock) AS locked, \
                (SELECT last_tx::text::bigint FROM checkpoint) AS checkpoint_tx, \
                (SELECT last_position FROM checkpoint) AS checkpoint_position, \
                (SELECT count(*) FROM moved) AS moved, \
                EXISTS (SELECT 1 FROM beyond) AS beyond, \
                {columns} \
         FROM (SELECT 1) AS always LEFT JOIN batch ON true \
         ORDER BY batch.transaction_id, batch.global_position"
    )
});

/// The condition a view change puts on its rows when [`apply_claimed`] runs it: that the
/// statement's compare-and-set moved the checkpoint.
pub const CHECKPOINT_MOVED: &str = "EXISTS (SELECT 1 FROM checkpoint_moved)";

/// A batch to commit with [`apply_claimed`]: read by a claim that left the checkpoint where
/// it was ([`CheckpointMove::WithChange`]), or handed over by the writers of this process.
#[derive(Debug, Clone, Copy)]
pub struct ClaimedBatch<'a> {
    /// The advisory lock's name, as in the claim's [`BatchScope`].
    pub lock_name: &'a str,
    pub projection: &'a str,
    pub version: i32,
    /// The type of its events.
    pub aggregate_type: &'a str,
    /// The checkpoint its events follow.
    pub from: LogPosition,
    /// The last of its events.
    pub through: LogPosition,
    /// The positions of its events, in log order, when a claim did not read them from the
    /// log (they were handed over): the commit then checks that nothing else lies among
    /// them. A claimed batch is what the log holds there by construction; checking it again
    /// would cost a comparison of every event with every other.
    pub unread: Option<&'a [i64]>,
}

/// What [`apply_claimed`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimedApply {
    /// Moved the checkpoint and applied the change.
    Applied,
    /// Another worker holds the version's lock; nothing was written.
    Busy,
    /// The checkpoint was no longer at the batch's `from` (another worker applied it
    /// first), or the log between `from` and `through` is not the batch's events alone and
    /// final. Nothing was written.
    Raced,
}

/// Commits a batch: in one statement, stops waiting for the WAL flush at commit (as
/// [`claim_batch`] does, and for its reason), takes the version's advisory lock, moves the
/// checkpoint from `from` to `through` with a compare-and-set, and runs `change` — one view
/// statement whose rows are under [`CHECKPOINT_MOVED`], with its arguments — as a common
/// table expression of the same statement, so the move and the change commit together or
/// not at all. Outside a transaction the statement is its own and commits at once; inside
/// the caller's, it holds the lock for the rest of it, and the batch's other changes follow.
///
/// A batch that no claim read (`unread`) moves the checkpoint only if the log shows what a
/// claim would have seen: `through` below the transaction horizon (no transaction still
/// running can add an event before it), and no event of the type between `from` and
/// `through` missing from the batch — that is, no other writer's event among its own, so the
/// checkpoint never steps over an event it did not apply.
pub async fn apply_claimed(
    conn: &mut PgConnection,
    batch: ClaimedBatch<'_>,
    change: Option<(&str, PgArguments)>,
) -> Result<ClaimedApply, sqlx::Error> {
    let (change_sql, mut arguments) = match change {
        Some((sql, arguments)) => (Some(sql), arguments),
        None => (None, PgArguments::default()),
    };
    // The move's parameters follow the change's own.
    let first = arguments.len() + 1;
    let parameter = |offset: usize| format!("${}", first + offset);
    let (lock, projection, version) = (parameter(0), parameter(1), parameter(2));
    let (from_tx, from_position) = (parameter(3), parameter(4));
    let (through_tx, through_position) = (parameter(5), parameter(6));
    let complete = match batch.unread {
        None => "true".to_owned(),
        Some(_) => {
            let (aggregate_type, positions) = (parameter(7), parameter(8));
            format!(
                "{through_tx}::bigint::text::xid8 < pg_snapshot_xmin(pg_current_snapshot()) \
                 AND NOT EXISTS ( \
                     SELECT 1 FROM events e \
                     WHERE e.aggregate_type = {aggregate_type} \
                       AND (e.transaction_id, e.global_position) \
                           > ({from_tx}::bigint::text::xid8, {from_position}) \
                       AND (e.transaction_id, e.global_position) \
                           <= ({through_tx}::bigint::text::xid8, {through_position}) \
                       AND e.global_position <> ALL ({positions}::bigint[]))"
            )
        }
    };
    let change_cte = change_sql.map_or_else(String::new, |sql| format!(", change AS ({sql})"));
    let sql = format!(
        "WITH settings AS MATERIALIZED ( \
             SELECT set_config('synchronous_commit', 'off', true) AS applied), \
         lock AS MATERIALIZED ( \
             SELECT pg_try_advisory_xact_lock(hashtextextended({lock}, 0)) AS held \
             FROM settings), \
         complete AS MATERIALIZED ( \
             SELECT {complete} AS holds FROM lock WHERE lock.held), \
         checkpoint_moved AS ( \
             UPDATE projection_checkpoints c \
             SET last_tx = {through_tx}::bigint::text::xid8, last_position = {through_position}, \
                 last_error = NULL, updated_at = now() \
             FROM complete \
             WHERE complete.holds AND c.projection = {projection} AND c.version = {version} \
               AND c.last_tx = {from_tx}::bigint::text::xid8 \
               AND c.last_position = {from_position} \
             RETURNING 1){change_cte} \
         SELECT (SELECT held FROM lock) AS locked, \
                EXISTS (SELECT 1 FROM checkpoint_moved) AS moved"
    );
    arguments
        .add(batch.lock_name)
        .and_then(|()| arguments.add(batch.projection))
        .and_then(|()| arguments.add(batch.version))
        .and_then(|()| arguments.add(batch.from.transaction_id))
        .and_then(|()| arguments.add(batch.from.global_position))
        .and_then(|()| arguments.add(batch.through.transaction_id))
        .and_then(|()| arguments.add(batch.through.global_position))
        .map_err(sqlx::Error::Encode)?;
    if let Some(positions) = batch.unread {
        arguments
            .add(batch.aggregate_type)
            .and_then(|()| arguments.add(positions))
            .map_err(sqlx::Error::Encode)?;
    }
    let row = sqlx::query_with(&sql, arguments).fetch_one(conn).await?;
    Ok(if !row.try_get::<bool, _>("locked")? {
        ClaimedApply::Busy
    } else if !row.try_get::<bool, _>("moved")? {
        ClaimedApply::Raced
    } else {
        ClaimedApply::Applied
    })
}

/// The first `limit` events of `aggregate_type` after `after`, up to and including
/// `through`, in log order: a stretch a checkpoint has moved over, so all of it is
/// committed and below the horizon already.
pub async fn read_between(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    after: LogPosition,
    through: LogPosition,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    // Qualified: a bare `transaction_id` in ORDER BY would name the bigint alias, which no
    // index orders, and each read would sort the whole stretch.
    sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($3::bigint::text::xid8, $4) \
           AND aggregate_type = $5 \
         ORDER BY events.transaction_id, events.global_position LIMIT $6"
    ))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(through.transaction_id)
    .bind(through.global_position)
    .bind(aggregate_type)
    .bind(limit)
    .fetch_all(executor)
    .await?
    .iter()
    .map(StoredEvent::from_row)
    .collect()
}

/// How far a position is behind the log, for the events a projection reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lag {
    /// Events after the position.
    pub events: i64,
    /// How long the oldest of them has been waiting, in seconds (0 when none waits).
    pub seconds: f64,
}

/// How far `checkpoint` is behind the log, in the events of `aggregate_type`.
pub async fn lag(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    checkpoint: LogPosition,
) -> Result<Lag, sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) AS events, \
                coalesce(extract(epoch FROM now() - min(recorded_at))::float8, 0) AS seconds \
         FROM events \
         WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
           AND aggregate_type = $3",
    )
    // Planned for these very parameters each time (an unnamed statement): a plan cached
    // for any position would have to assume a large share of the log lies past it and
    // scan the whole table, where an index range is a few rows (the readiness probe and
    // the metrics collector ask this every few seconds).
    .persistent(false)
    .bind(checkpoint.transaction_id)
    .bind(checkpoint.global_position)
    .bind(aggregate_type)
    .fetch_one(executor)
    .await?;
    Ok(Lag {
        events: row.try_get("events")?,
        seconds: row.try_get::<f64, _>("seconds")?.max(0.0),
    })
}

/// Whether the stream `aggregate_type`/`aggregate_id` has begun and not ended with
/// `ending_type`: a primary-key probe for its first event (a user stream begins with the
/// registration), and a scan of the stream's keys for its end (a user's with their
/// forgetting).
pub async fn stream_open(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    ending_type: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events \
                        WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1) \
            AND NOT EXISTS (SELECT 1 FROM events \
                            WHERE aggregate_type = $1 AND aggregate_id = $2 \
                              AND event_type = $3)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(ending_type)
    .fetch_one(executor)
    .await
}

/// The ids of the `aggregate_type` streams that begin with an event whose `role` field (in
/// its payload, as `first_type`) is `person`: the messages a user posted (`message`,
/// `MessagePosted`, `author`), or the conversations they took part in (`conversation`,
/// `PrivateMessageSent`, `sender` and `recipient`). Reads every stream's first event of the
/// type: for forgetting someone, which is rare, and must not depend on views that may lag.
pub async fn streams_begun_by(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    first_type: &str,
    roles: &[&str],
    person: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT aggregate_id FROM events \
         WHERE aggregate_type = $1 AND sequence = 1 AND event_type = $2 \
           AND EXISTS (SELECT 1 FROM unnest($3::text[]) AS role \
                       WHERE payload -> $2 ->> role = $4) \
         ORDER BY global_position",
    )
    .bind(aggregate_type)
    .bind(first_type)
    .bind(roles)
    .bind(person)
    .fetch_all(executor)
    .await
}

/// Every event of the streams that are `person`'s or that they took part in from the start,
/// in log order: their user stream, the streams of the messages they posted, and the
/// conversations they are in (both sides). What their data download and the admin tool's
/// audit read; like [`streams_begun_by`], it reads every stream's first event of the two
/// other types.
pub async fn events_of_person(
    executor: impl PgExecutor<'_>,
    person: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (aggregate_type = 'user' AND aggregate_id = $1) \
            OR (aggregate_type = 'message' AND aggregate_id IN ( \
                   SELECT aggregate_id FROM events \
                   WHERE aggregate_type = 'message' AND sequence = 1 \
                     AND event_type = 'MessagePosted' \
                     AND payload -> 'MessagePosted' ->> 'author' = $1)) \
            OR (aggregate_type = 'conversation' AND aggregate_id IN ( \
                   SELECT aggregate_id FROM events \
                   WHERE aggregate_type = 'conversation' AND sequence = 1 \
                     AND event_type = 'PrivateMessageSent' \
                     AND $1 IN (payload -> 'PrivateMessageSent' ->> 'sender', \
                                payload -> 'PrivateMessageSent' ->> 'recipient'))) \
         ORDER BY events.transaction_id, global_position"
    ))
    .bind(person)
    .fetch_all(executor)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// Every event of the stream `aggregate_type`/`aggregate_id`, in stream order, as the log
/// holds it.
pub async fn events_of_stream(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence"
    ))
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(executor)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// Where a reading of the log as it stood at some point stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Through the event at this global position, in log order; where no event has it (a
    /// gap a failed insert left, or past the head), through the last one before it.
    Position(i64),
    /// Through the events recorded at or before this time.
    Time(DateTime<Utc>),
}

/// The events of `aggregate_types` in log order, through `until`, as a stream (the whole
/// log may be read).
pub fn events_until<'a>(
    conn: &'a mut PgConnection,
    aggregate_types: &'a [&'a str],
    until: Until,
) -> BoxStream<'a, Result<StoredEvent, sqlx::Error>> {
    let (position, time) = match until {
        Until::Position(position) => (Some(position), None),
        Until::Time(time) => (None, Some(time)),
    };
    sqlx::query(EVENTS_UNTIL.as_str())
        .bind(aggregate_types)
        .bind(position)
        .bind(time)
        .fetch(conn)
        .map(|row| row.and_then(|row| StoredEvent::from_row(&row)))
        .boxed()
}

/// The statement of [`events_until`].
static EVENTS_UNTIL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE aggregate_type = ANY($1) \
           AND ($2::bigint IS NULL OR (events.transaction_id, global_position) <= \
                (SELECT e.transaction_id, e.global_position FROM events e \
                 WHERE e.global_position <= $2 ORDER BY e.global_position DESC LIMIT 1)) \
           AND ($3::timestamptz IS NULL OR recorded_at <= $3) \
         ORDER BY events.transaction_id, global_position"
    )
});

/// Up to `limit` events after `after` (a global position) that hold a personal field in
/// plain text: of a type in `personal` (event type, field) whose field is a JSON string
/// rather than a sealed value. Written before sealing existed, or by an older build since;
/// `person`, if given, narrows them to those streams [`events_of_person`] reads.
pub async fn plaintext_personal_events(
    executor: impl PgExecutor<'_>,
    personal: &[(&str, &str)],
    person: Option<&str>,
    after: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let (types, fields): (Vec<&str>, Vec<&str>) = personal.iter().copied().unzip();
    let rows = sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE global_position > $3 \
           AND EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[]) AS p(event_type, field) \
                       WHERE p.event_type = events.event_type \
                         AND json_typeof(payload -> p.event_type -> p.field) = 'string') \
           AND ($5::text IS NULL \
                OR (aggregate_type = 'user' AND aggregate_id = $5) \
                OR payload -> 'MessagePosted' ->> 'author' = $5 \
                OR payload -> 'PrivateMessageSent' ->> 'sender' = $5) \
         ORDER BY global_position LIMIT $4"
    ))
    .bind(types)
    .bind(fields)
    .bind(after)
    .bind(limit)
    .bind(person)
    .fetch_all(executor)
    .await?;
    rows.iter().map(StoredEvent::from_row).collect()
}

/// Replaces the payload of the event at `global_position`: only for sealing personal fields
/// an older build stored in plain text, by the owner (the servers' role may not).
pub async fn reseal_payload(
    executor: impl PgExecutor<'_>,
    global_position: i64,
    payload: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE events SET payload = $2::json WHERE global_position = $1")
        .bind(global_position)
        .bind(payload)
        .execute(executor)
        .await?;
    Ok(())
}

/// An event of a stream, as an aggregate is rebuilt from it: the stream's type and id are
/// the reader's already; its place in the global log is what a write that ends on it waits
/// for the views to reach.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub sequence: i64,
    pub position: LogPosition,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

/// The events of the stream `aggregate_type`/`aggregate_id` after its `after_sequence`th, in
/// stream order (all of them from 0; none if the stream has not begun or has not moved):
/// an aggregate's state read straight from the store, or a cached one brought up to date.
pub async fn stream_after(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
) -> Result<Vec<StreamEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT sequence, transaction_id::text::bigint AS transaction_id, global_position, \
                event_type, event_version, payload, metadata FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(after_sequence)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StreamEvent {
                sequence: row.try_get("sequence")?,
                position: LogPosition::from_row(row)?,
                event_type: row.try_get("event_type")?,
                event_version: row.try_get("event_version")?,
                payload: row.try_get("payload")?,
                metadata: row.try_get("metadata")?,
            })
        })
        .collect()
}

/// An event to append: what the command side decided, serialized.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

/// Appends `events` to the stream `aggregate_type`/`aggregate_id` if it still ends at
/// `expected_sequence`, numbering them on from there, in one statement and so one round trip
/// and one durable commit; with them, stores the simulator's `latest` when given. Returns
/// them as the log now holds them, in stream order — with their places in the log, so that
/// no second lookup is needed, and whole, so that this process's projectors can apply them
/// without reading them back (see `projections::progress`) — or `None` when the stream had
/// moved on (nothing is written then: the caller decided on old state).
///
/// The check covers a stream that is *shorter* than expected as well as longer — a decision
/// made on a state the log no longer has (a cache that outlived a restore) would otherwise
/// append after a gap. Two writers that both find the stream where they expect it collide on
/// the primary key instead, and the second gets a unique violation: also a conflict. The
/// statement never lowers or rewrites anything it did not just insert.
pub async fn append(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    expected_sequence: i64,
    events: Vec<NewEvent>,
    latest: Option<i64>,
) -> Result<Option<Vec<StoredEvent>>, sqlx::Error> {
    let (types, versions, payloads, metadata): (Vec<_>, Vec<_>, Vec<_>, Vec<_>) = events
        .iter()
        .map(|event| {
            (
                event.event_type.as_str(),
                event.event_version.as_str(),
                &event.payload,
                &event.metadata,
            )
        })
        .collect();
    // The payloads travel as jsonb (how sqlx sends a JSON value) and are stored as json, as
    // postgres-es stored them. `latest` is written only when the events are: a refused append
    // leaves it to the caller, whose command may still fail.
    let rows = sqlx::query(
        "WITH stream AS ( \
             SELECT coalesce(max(sequence), 0) AS sequence FROM events \
             WHERE aggregate_type = $1 AND aggregate_id = $2), \
         appended AS ( \
             INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, \
                                 event_version, payload, metadata) \
             SELECT $1, $2, $3 + new.n, new.event_type, new.event_version, new.payload::json, \
                    new.metadata::json \
             FROM stream, unnest($4::text[], $5::text[], $6::jsonb[], $7::jsonb[]) \
                  WITH ORDINALITY AS new(event_type, event_version, payload, metadata, n) \
             WHERE stream.sequence = $3 \
             ORDER BY new.n \
             RETURNING transaction_id::text::bigint AS transaction_id, global_position, \
                       sequence, recorded_at), \
         latest AS ( \
             INSERT INTO simulator_latest (singleton, latest) \
             SELECT true, $8 WHERE $8 IS NOT NULL AND EXISTS (SELECT 1 FROM appended) \
             ON CONFLICT (singleton) DO UPDATE SET latest = EXCLUDED.latest, updated_at = now()) \
         SELECT transaction_id, global_position, sequence, recorded_at FROM appended \
         ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(expected_sequence)
    .bind(types)
    .bind(versions)
    .bind(payloads)
    .bind(metadata)
    .bind(latest)
    .fetch_all(executor)
    .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(sqlx::Error::Database(err)) if err.is_unique_violation() => return Ok(None),
        Err(err) => return Err(err),
    };
    if rows.is_empty() {
        return Ok(None);
    }
    rows.iter()
        .zip(events)
        .map(|(row, event)| {
            Ok(StoredEvent {
                position: LogPosition::from_row(row)?,
                aggregate_type: aggregate_type.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                sequence: row.try_get("sequence")?,
                event_type: event.event_type,
                event_version: event.event_version,
                payload: event.payload,
                metadata: event.metadata,
                recorded_at: row.try_get("recorded_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map(Some)
}

/// Where the newest event of the stream `aggregate_type`/`aggregate_id` stands in the log
/// (none if the stream has not begun): what a write waits for the views to reach, to read
/// its own writes.
pub async fn newest_in_stream(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Option<LogPosition>, sqlx::Error> {
    sqlx::query(
        "SELECT transaction_id::text::bigint AS transaction_id, global_position FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_optional(executor)
    .await?
    .as_ref()
    .map(LogPosition::from_row)
    .transpose()
}

/// The registration and the follows in the user stream `username`, in stream order: how the
/// legacy import tells an earlier import of a row from another account of the same name.
/// This statement and [`ever_moderated`]'s name the domain's types literally, as the import
/// wrote them: this crate knows the table, not the domain.
pub async fn registration_and_follows(
    executor: impl PgExecutor<'_>,
    username: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = 'user' AND aggregate_id = $1 \
         AND event_type IN ('UserRegistered', 'UserFollowed') ORDER BY sequence"
    ))
    .bind(username)
    .fetch_all(executor)
    .await?
    .iter()
    .map(StoredEvent::from_row)
    .collect()
}

/// Whether any moderation decision was ever recorded on the message `message_id`.
pub async fn ever_moderated(
    executor: impl PgExecutor<'_>,
    message_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events WHERE aggregate_type = 'message' \
         AND aggregate_id = $1 AND event_type IN ('MessageFlagged', 'MessageUnflagged'))",
    )
    .bind(message_id)
    .fetch_one(executor)
    .await
}

/// The highest position written, if any: the log's head.
pub async fn head(executor: impl PgExecutor<'_>) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(executor)
        .await
}

/// How many events the log holds.
pub async fn count(executor: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(executor)
        .await
}

/// The log as a whole: how many events, up to where, and its room on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub events: i64,
    /// The highest position written (none while the log is empty).
    pub head_position: Option<i64>,
    /// The table and its indexes, on disk.
    pub size_bytes: i64,
}

/// The log's [`Extent`], in one statement (so one snapshot).
pub async fn extent(executor: impl PgExecutor<'_>) -> Result<Extent, sqlx::Error> {
    let row = sqlx::query(
        "SELECT count(*) AS events, max(global_position) AS head, \
                pg_total_relation_size('events') AS size FROM events",
    )
    .fetch_one(executor)
    .await?;
    Ok(Extent {
        events: row.try_get("events")?,
        head_position: row.try_get("head")?,
        size_bytes: row.try_get("size")?,
    })
}

/// Each event as its line of the admin tool's export, with its position, in log order, read
/// in `tx`'s snapshot. The format is the export's own (replay-tool's `export` module
/// describes it); it is built here, by PostgreSQL, because the stored json texts go into the
/// lines unparsed.
pub fn export_lines(tx: &mut PgConnection) -> BoxStream<'_, Result<(String, i64), sqlx::Error>> {
    sqlx::query_as::<_, (String, i64)>(EXPORT_QUERY.as_str()).fetch(tx)
}

/// The statement of [`export_lines`]: the same for every export, built once so that the
/// stream can borrow it.
static EXPORT_QUERY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT json_build_object( \
             'global_position', global_position, \
             'transaction_id', transaction_id::text::bigint, \
             'recorded_at', recorded_at, \
             'aggregate_type', aggregate_type, \
             'aggregate_id', aggregate_id, \
             'sequence', sequence, \
             'event_type', event_type, \
             'event_version', event_version, \
             {payload}, \
             {metadata})::text, \
             global_position \
         FROM events ORDER BY transaction_id, global_position",
        payload = embedded("payload"),
        metadata = embedded("metadata"),
    )
});

/// The key and value, in `json_build_object`, of the json column `column`: its stored text as
/// is, or as a string under `{column}_text` where embedding it would not keep it exactly.
fn embedded(column: &str) -> String {
    let inexact = format!(r"{column}::text ~ '[\r\n]|^[ \t]|[ \t]$'");
    format!(
        "CASE WHEN {inexact} THEN '{column}_text' ELSE '{column}' END, \
         CASE WHEN {inexact} THEN to_json({column}::text) ELSE {column} END"
    )
}

/// Creates the session's temporary `import_events`, empty, where an import stages its input
/// before writing any of it: a batch and a line number, then the columns of `events` an
/// import restores, with their types. The admin tool's import fills it in this column order,
/// checks it, and has [`append_staged`] write it out; on `conn`, whose session holds it.
pub async fn create_import_table(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "CREATE TEMP TABLE import_events AS \
         SELECT 0::bigint AS batch, 0::bigint AS line_number, global_position, recorded_at, \
                aggregate_type, aggregate_id, sequence, event_type, event_version, payload, \
                metadata \
         FROM events WITH NO DATA",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Makes appends by others wait until the end of `conn`'s transaction (reads go on).
pub async fn lock_out_writers(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("LOCK TABLE events IN EXCLUSIVE MODE")
        .execute(conn)
        .await?;
    Ok(())
}

/// Moves the positions' identity sequence to `highest`, so that the next event appended gets
/// the position after it.
pub async fn continue_after(conn: &mut PgConnection, highest: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'global_position'), $1)")
        .bind(highest)
        .execute(conn)
        .await?;
    Ok(())
}

/// The lowest position above `position`, if any event has one.
pub async fn first_above(
    executor: impl PgExecutor<'_>,
    position: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(global_position) FROM events WHERE global_position > $1")
        .bind(position)
        .fetch_one(executor)
        .await
}

/// Appends batch `batch` of the session's `import_events` (see [`create_import_table`]) in
/// line order, keeping each event's position and `recorded_at`; returns how many events it
/// wrote and the highest position among them. The transaction id is left to its default:
/// the id of `tx`, the caller's transaction.
pub async fn append_staged(tx: &mut PgConnection, batch: i64) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "WITH written AS ( \
             INSERT INTO events (global_position, recorded_at, aggregate_type, aggregate_id, \
                                 sequence, event_type, event_version, payload, metadata) \
             OVERRIDING SYSTEM VALUE \
             SELECT global_position, recorded_at, aggregate_type, aggregate_id, sequence, \
                    event_type, event_version, payload, metadata \
             FROM import_events WHERE batch = $1 ORDER BY line_number \
             RETURNING global_position) \
         SELECT count(*), max(global_position) FROM written",
    )
    .bind(batch)
    .fetch_one(tx)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_before_position() {
        let early_tx_late_position = LogPosition {
            transaction_id: 10,
            global_position: 7,
        };
        let late_tx_early_position = LogPosition {
            transaction_id: 11,
            global_position: 6,
        };
        assert!(early_tx_late_position < late_tx_early_position);
    }

    #[test]
    fn notification_form_parses() {
        assert_eq!(
            LogPosition::parse("812:45"),
            Some(LogPosition {
                transaction_id: 812,
                global_position: 45
            })
        );
        assert_eq!(LogPosition::parse("812"), None);
        assert_eq!(LogPosition::parse("x:1"), None);
    }
}
