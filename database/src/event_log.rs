//! The event log: every statement of ours on the `events` table, and the positions and rows
//! they return.
//!
//! Both sides of the service and the admin tool read the table, so its SQL lives here, under
//! all of them, once:
//! - the projectors' and the live feeds' catch-up reads, and how far behind the log a
//!   checkpoint is;
//! - the command side's reads of single streams: is a name registered, an aggregate's state,
//!   where a write stands in the log;
//! - the log as a whole — its head, count and size — for the metrics and the admin tool;
//! - the admin tool's export of the log and import into an empty one, and the legacy
//!   import's questions about streams.
//!
//! The statements postgres-es itself runs (the command bus's appends and stream loads) stay in
//! that crate; they name their columns, so the columns only we use (`global_position`,
//! `transaction_id`, `recorded_at`) are invisible to them. Tests keep their own SQL.
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
use futures_util::stream::BoxStream;
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row};

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

/// The next events of `aggregate_type` after `after`, up to and including `until`, that lie
/// below the transaction horizon — at most `limit` of them, in log order: a projector's
/// batch, read in its locked transaction `tx`.
pub async fn read_below_horizon(
    tx: &mut PgConnection,
    aggregate_type: &str,
    after: LogPosition,
    until: LogPosition,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    // Ordered by the qualified columns: a bare `transaction_id` would name the selected
    // bigint alias, which no index orders, and every batch would sort the rest of the log.
    sqlx::query(&format!(
        "SELECT {EVENT_COLUMNS} FROM events \
         WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($5::bigint::text::xid8, $6) \
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) \
           AND aggregate_type = $3 \
         ORDER BY events.transaction_id, events.global_position \
         LIMIT $4"
    ))
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(aggregate_type)
    .bind(limit)
    .bind(until.transaction_id)
    .bind(until.global_position)
    .fetch_all(tx)
    .await?
    .iter()
    .map(StoredEvent::from_row)
    .collect()
}

/// Whether `tx` sees any event of `aggregate_type` after `after`, up to and including
/// `until`, horizon or not: when a batch finds nothing below the horizon, whether committed
/// events wait above it.
pub async fn any_after(
    tx: &mut PgConnection,
    aggregate_type: &str,
    after: LogPosition,
    until: LogPosition,
) -> Result<bool, sqlx::Error> {
    // Not `EXISTS (...)`: PostgreSQL plans a prepared statement once for any parameters
    // after a few runs, guesses that a third of the log lies past an unknown position, and
    // scans the whole table (11 ms on 40,000 events, on every idle batch). Asking for the
    // first such row in index order stays an index probe.
    Ok(sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM events \
         WHERE (transaction_id, global_position) > ($1::bigint::text::xid8, $2) \
           AND (transaction_id, global_position) <= ($4::bigint::text::xid8, $5) \
           AND aggregate_type = $3 \
         ORDER BY transaction_id, global_position LIMIT 1",
    )
    .bind(after.transaction_id)
    .bind(after.global_position)
    .bind(aggregate_type)
    .bind(until.transaction_id)
    .bind(until.global_position)
    .fetch_optional(tx)
    .await?
    .is_some())
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

/// Whether the stream `aggregate_type`/`aggregate_id` has begun: a primary-key probe for its
/// first event (a user stream begins with the registration).
pub async fn stream_started(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_one(executor)
    .await
}

/// An event of a stream, as an aggregate is rebuilt from it: the stream's type and id are
/// the reader's already, and its place in the global log does not matter.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

/// Every event of the stream `aggregate_type`/`aggregate_id`, in stream order (none if it has
/// not begun): an aggregate's state read straight from the store, as current as it gets.
pub async fn stream(
    executor: impl PgExecutor<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
) -> Result<Vec<StreamEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT sequence, event_type, event_version, payload, metadata FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StreamEvent {
                sequence: row.try_get("sequence")?,
                event_type: row.try_get("event_type")?,
                event_version: row.try_get("event_version")?,
                payload: row.try_get("payload")?,
                metadata: row.try_get("metadata")?,
            })
        })
        .collect()
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
