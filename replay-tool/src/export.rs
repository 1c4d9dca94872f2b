//! `export` and `import`: the whole event log as JSON lines, and back into an empty store — a
//! backup that keeps every event exactly, or a move of the log to another cluster.
//!
//! **Format.** A first line with what a restored service needs beside the log to answer as
//! before, today the simulator's `latest` (`null`: it never sent one):
//!
//! ```text
//! {"simulator_latest":4711}
//! ```
//!
//! Then one event per line, in log order `(transaction_id, global_position)`, each an
//! object built by PostgreSQL:
//!
//! ```text
//! {"global_position" : 7, "transaction_id" : 812, "recorded_at" : "2026-11-27T12:00:00.123456+00:00",
//!  "aggregate_type" : "message", "aggregate_id" : "…", "sequence" : 1, "event_type" : "MessagePosted",
//!  "event_version" : "1.0", "payload" : {"MessagePosted": {…}}, "metadata" : {…}}
//! ```
//!
//! (on one line). `payload` and `metadata` are `json` columns, i.e. text kept as it was
//! written; each is embedded as that very text, never re-serialised, so key order, spacing and
//! escapes come back byte for byte. Two kinds of text cannot travel that way — a line break
//! would split the line, and whitespace around a value is not part of the embedded value — so
//! such a text goes as a JSON string in `payload_text` (`metadata_text`) instead.
//!
//! **Export** reads one REPEATABLE READ snapshot, so it is consistent while servers write
//! (`latest` and the events alike: a write stores both in one statement). A
//! file is written under a temporary name and renamed when complete: JSON lines have no end
//! marker, and a truncated export would otherwise import as a shorter log. The file is made
//! readable and writable by its owner alone (`0600`): it holds password hashes and private
//! messages.
//!
//! **Transaction ids are not kept.** Projectors read only rows whose transaction is older than
//! every running one (see `projections::projector`), and ids from another cluster may lie in
//! this one's future, where their events would wait unread. Each import transaction's own id
//! fills the column instead, and the order is kept by writing the lines in order, in
//! transactions of at most `BATCH_ROWS` rows within which positions only increase: a new one
//! starts wherever a position is not above the previous line's (the log is ordered by
//! transaction first, so positions go down where a late-committing transaction ends). Rows of
//! one transaction are ordered by position and transactions by id, so the imported
//! `(transaction_id, global_position)` order is the file's. Positions and `recorded_at` are
//! kept; the identity sequence is moved past the highest position, so new events follow.
//!
//! **Import** refuses a store that holds any event, and takes exports without the first line
//! too (from builds before it), leaving `latest` as it is. It reads the input once (a file, or
//! stdin) into a temporary table, checking every line — an object with exactly the exported
//! fields, of the right types, in log order — and then that no position or stream version
//! repeats; a bad input is refused with the number of its first bad line, before anything is
//! written to the store. A line longer than [`MAX_LINE_BYTES`] is refused as soon as that many
//! bytes of it are read, so a file with no line breaks cannot fill the memory. Only then are
//! the batches written, each in its own transaction. A failure after that (a lost connection;
//! a server appending meanwhile, which is detected) leaves the batches before it: recreate the
//! database and import again.

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use database::event_log;
use projections::LogPosition;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::report::ProgressReport;
use crate::terminal::printable;

/// The longest line an import accepts, in bytes, its line break aside. An event's line is a
/// few kilobytes at most (a message is at most 1,000 characters, six bytes each when escaped);
/// this leaves room for any event to come, and bounds what one line can make us hold.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Rows per import transaction, at most: small enough that no transaction holds the
/// projectors' horizon back for long, large enough that commits do not dominate.
const BATCH_ROWS: usize = 1000;
/// Lines per statement that fills the import's staging table.
const STAGE_ROWS: usize = 2000;
/// Bytes of exported lines handed to the writer at a time.
const WRITE_CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight between the database and the file, either way: this bounds the memory
/// used, whatever the size of the log.
const CHUNKS_IN_FLIGHT: usize = 4;

/// A number of events and the range of their positions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub count: u64,
    /// The lowest and the highest position (none without events).
    pub positions: Option<(i64, i64)>,
}

impl Span {
    fn add(&mut self, position: i64) {
        self.count += 1;
        self.positions = Some(match self.positions {
            None => (position, position),
            Some((lowest, highest)) => (lowest.min(position), highest.max(position)),
        });
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.count == 1 { "" } else { "s" };
        write!(f, "{} event{plural}", self.count)?;
        if let Some((lowest, highest)) = self.positions {
            write!(f, " (positions {lowest}–{highest})")?;
        }
        Ok(())
    }
}

/// " in 1.2s (8500 events/s)".
fn timing(events: u64, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    format!(
        " in {seconds:.1}s ({:.0} events/s)",
        events as f64 / seconds.max(1e-3)
    )
}

/// `path` as it may be shown on a terminal.
fn shown(path: &Path) -> String {
    printable(&path.display().to_string())
}

/// The export's first line: the state beside the log that a restored service needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    simulator_latest: Option<i64>,
}

/// A finished export.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    pub events: Span,
    pub destination: String,
    pub elapsed: Duration,
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exported {} to {}{}",
            self.events,
            self.destination,
            timing(self.events.count, self.elapsed)
        )
    }
}

/// Writes the whole event log to `file` (`-`: stdout) as JSON lines, in log order, from one
/// snapshot.
pub async fn export_to(pool: &PgPool, file: &Path) -> anyhow::Result<ExportSummary> {
    let started = Instant::now();
    let destination = Destination::new(file);
    let (chunks, received) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let writer = destination.start_writer(received)?;
    let streamed = stream_log(pool, chunks).await;
    let written = writer
        .await
        .unwrap_or_else(|err| Err(io::Error::other(err)));
    let exported = match (streamed, written) {
        // A failed writer stops the stream too; its error is the cause.
        (_, Err(err)) => Err(anyhow::Error::new(err).context(format!("writing {destination}"))),
        (Err(err), Ok(())) => Err(err),
        (Ok(events), Ok(())) => destination.complete().map(|()| events),
    };
    match exported {
        Ok(events) => Ok(ExportSummary {
            events,
            destination: destination.to_string(),
            elapsed: started.elapsed(),
        }),
        Err(err) => {
            destination.abandon();
            Err(err)
        }
    }
}

/// Where an export goes: stdout, or a file first written as `FILE.partial`.
enum Destination {
    Stdout,
    File { path: PathBuf, partial: PathBuf },
}

impl Destination {
    fn new(file: &Path) -> Self {
        if file == Path::new("-") {
            return Self::Stdout;
        }
        let mut partial = file.as_os_str().to_owned();
        partial.push(".partial");
        Self::File {
            path: file.to_owned(),
            partial: partial.into(),
        }
    }

    /// Starts the thread that writes the chunks arriving on `chunks`, until they end.
    fn start_writer(
        &self,
        chunks: mpsc::Receiver<Vec<u8>>,
    ) -> anyhow::Result<tokio::task::JoinHandle<io::Result<()>>> {
        Ok(match self {
            Self::Stdout => {
                tokio::task::spawn_blocking(move || drain(io::stdout().lock(), chunks).map(drop))
            }
            Self::File { partial, .. } => {
                let file = owner_only_file(partial)
                    .with_context(|| format!("creating {}", shown(partial)))?;
                tokio::task::spawn_blocking(move || drain(file, chunks)?.sync_all())
            }
        })
    }

    /// Puts a complete export in place.
    fn complete(&self) -> anyhow::Result<()> {
        if let Self::File { path, partial } = self {
            std::fs::rename(partial, path)
                .with_context(|| format!("renaming {} to {self}", shown(partial)))?;
        }
        Ok(())
    }

    /// Removes an incomplete export (there is nothing to do about stdout).
    fn abandon(&self) {
        if let Self::File { partial, .. } = self {
            // Best effort: the error being reported matters more than a leftover file.
            let _ = std::fs::remove_file(partial);
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::File { path, .. } => f.write_str(&shown(path)),
        }
    }
}

/// Creates (or empties) `path` for the owner alone to read and write, whatever the umask;
/// a file left over from an earlier run gets those permissions too.
pub(crate) fn owner_only_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Writes every chunk to `sink` until the sender is done; returns the flushed sink.
fn drain<W: Write>(mut sink: W, mut chunks: mpsc::Receiver<Vec<u8>>) -> io::Result<W> {
    while let Some(chunk) = chunks.blocking_recv() {
        sink.write_all(&chunk)?;
    }
    sink.flush()?;
    Ok(sink)
}

/// Sends the log's lines, in log order from one snapshot, to `chunks`.
async fn stream_log(pool: &PgPool, chunks: mpsc::Sender<Vec<u8>>) -> anyhow::Result<Span> {
    let mut tx = pool.begin().await?;
    // One snapshot, so the export is consistent while servers write. Being read-only, the
    // transaction takes no id, so it holds back no projector's horizon.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    // So that the same log exports to the same bytes, whatever the server's time zone.
    sqlx::query("SET LOCAL TIME ZONE 'UTC'")
        .execute(&mut *tx)
        .await?;
    let total = event_log::count(&mut *tx).await?;
    let mut report = ProgressReport::new("export", total.max(0) as u64);
    let mut events = Span::default();
    let mut chunk = Vec::with_capacity(WRITE_CHUNK_BYTES);
    let header = Header {
        simulator_latest: sqlx::query_scalar("SELECT latest FROM simulator_latest")
            .fetch_optional(&mut *tx)
            .await?,
    };
    serde_json::to_writer(&mut chunk, &header)?;
    chunk.push(b'\n');
    let mut in_chunk = 0;
    let mut last_position = 0;
    let mut rows = event_log::export_lines(&mut tx);
    // `poll_next` is callable on the boxed stream itself, without a `StreamExt`.
    while let Some(row) = std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)).await {
        let (line, position) = row?;
        chunk.extend_from_slice(line.as_bytes());
        chunk.push(b'\n');
        events.add(position);
        in_chunk += 1;
        last_position = position;
        if chunk.len() >= WRITE_CHUNK_BYTES {
            hand_to_writer(&chunks, &mut chunk).await?;
            report.advance(std::mem::take(&mut in_chunk), position);
        }
    }
    drop(rows);
    tx.commit().await?;
    if !chunk.is_empty() {
        hand_to_writer(&chunks, &mut chunk).await?;
        report.advance(in_chunk, last_position);
    }
    report.finish("exported");
    Ok(events)
}

async fn hand_to_writer(chunks: &mpsc::Sender<Vec<u8>>, chunk: &mut Vec<u8>) -> anyhow::Result<()> {
    let full = std::mem::replace(chunk, Vec::with_capacity(WRITE_CHUNK_BYTES));
    chunks
        .send(full)
        .await
        .map_err(|_| anyhow::anyhow!("the writer stopped"))
}

/// Why an import refused its input or the store. All but the last are found before anything
/// is written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "the event store is not empty (it holds events up to position {0}); \
         import only into a new database"
    )]
    NotEmpty(i64),
    #[error("line {line}: {problem}")]
    BadLine { line: u64, problem: String },
    #[error("line {line}: the same {key} as line {first}")]
    Repeated {
        line: u64,
        first: u64,
        key: &'static str,
    },
    /// Found once writing had begun: the batches written before stay.
    #[error(
        "events were appended by someone else during the import (at position {0}); stop \
         every server, recreate the database and import again"
    )]
    WrittenMeanwhile(i64),
}

/// A finished import.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub events: Span,
    pub source: String,
    /// The transactions the events were written in.
    pub transactions: u64,
    pub elapsed: Duration,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.transactions == 1 { "" } else { "s" };
        write!(
            f,
            "imported {} from {} as {} transaction{plural}{}",
            self.events,
            self.source,
            self.transactions,
            timing(self.events.count, self.elapsed)
        )
    }
}

/// Restores an exported log from `file` (`-`: stdin) into an empty event store.
pub async fn import_from(pool: &PgPool, file: &Path) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    // The staging table belongs to this session, which must not go back to the pool with it.
    conn.close_on_drop();
    // Before reading what may be a large input.
    refuse_unless_empty(&mut conn).await?;
    let stdin = file == Path::new("-");
    let input: Box<dyn Read + Send> = if stdin {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(file).with_context(|| format!("opening {}", shown(file)))?)
    };
    let staged = stage(&mut conn, input).await?;
    refuse_repeats(&mut conn).await?;
    write_batches(&mut conn, &staged).await?;
    if let Some(latest) = staged.latest {
        restore_latest(&mut conn, latest).await?;
    }
    Ok(ImportSummary {
        events: staged.events,
        source: if stdin {
            "stdin".to_owned()
        } else {
            shown(file)
        },
        transactions: staged.batches,
        elapsed: started.elapsed(),
    })
}

async fn refuse_unless_empty(conn: &mut PgConnection) -> anyhow::Result<()> {
    match event_log::head(conn).await? {
        Some(head) => Err(ImportError::NotEmpty(head).into()),
        None => Ok(()),
    }
}

/// Stores the simulator's `latest` as the export had it.
async fn restore_latest(conn: &mut PgConnection, latest: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO simulator_latest (singleton, latest) VALUES (true, $1) \
         ON CONFLICT (singleton) DO UPDATE SET latest = EXCLUDED.latest, updated_at = now()",
    )
    .bind(latest)
    .execute(conn)
    .await?;
    Ok(())
}

/// What the input held, once read and checked.
struct Staged {
    events: Span,
    /// The simulator's `latest`, where the export's first line has one.
    latest: Option<i64>,
    /// The batches (transactions) they are to be written in.
    batches: u64,
}

/// Reads the whole input into the session's `import_events`, checking every line; the store
/// is not touched.
async fn stage(conn: &mut PgConnection, input: Box<dyn Read + Send>) -> anyhow::Result<Staged> {
    // With the columns `stage_chunk` fills, in its order.
    event_log::create_import_table(&mut *conn).await?;
    let (sender, mut chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
    // The reader stops at its first bad line, or when this side fails and drops `chunks`.
    let reader = tokio::task::spawn_blocking(move || read_input(input, sender));
    while let Some(chunk) = chunks.recv().await {
        stage_chunk(conn, chunk).await?;
    }
    let staged = reader.await.context("the import's reader failed")??;
    // The checks group the whole table, and the batches are read back by number.
    sqlx::query("CREATE INDEX ON import_events (batch, line_number)")
        .execute(&mut *conn)
        .await?;
    sqlx::query("ANALYZE import_events")
        .execute(&mut *conn)
        .await?;
    Ok(staged)
}

async fn stage_chunk(conn: &mut PgConnection, chunk: Chunk) -> anyhow::Result<()> {
    let lines = (chunk.line_number[0], chunk.line_number[chunk.len() - 1]);
    sqlx::query(
        "INSERT INTO import_events \
         SELECT batch, line_number, global_position, recorded_at, aggregate_type, aggregate_id, \
                sequence, event_type, event_version, payload::json, metadata::json \
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::timestamptz[], $5::text[], \
                     $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[]) \
              AS chunk(batch, line_number, global_position, recorded_at, aggregate_type, \
                       aggregate_id, sequence, event_type, event_version, payload, metadata)",
    )
    .bind(chunk.batch)
    .bind(chunk.line_number)
    .bind(chunk.global_position)
    .bind(chunk.recorded_at)
    .bind(chunk.aggregate_type)
    .bind(chunk.aggregate_id)
    .bind(chunk.sequence)
    .bind(chunk.event_type)
    .bind(chunk.event_version)
    .bind(chunk.payload)
    .bind(chunk.metadata)
    .execute(conn)
    .await
    .with_context(|| format!("reading lines {}–{}", lines.0, lines.1))?;
    Ok(())
}

/// Refuses an input in which a position, or a stream's version, appears twice: the store would
/// refuse it halfway through.
async fn refuse_repeats(conn: &mut PgConnection) -> anyhow::Result<()> {
    for key in [
        "global_position",
        "(aggregate_type, aggregate_id, sequence)",
    ] {
        let repeat: Option<(i64, i64)> = sqlx::query_as(&format!(
            "SELECT line_number, first FROM ( \
                 SELECT line_number, min(line_number) OVER (PARTITION BY {key}) AS first \
                 FROM import_events) AS lines \
             WHERE line_number > first ORDER BY line_number LIMIT 1"
        ))
        .fetch_optional(&mut *conn)
        .await?;
        if let Some((line, first)) = repeat {
            return Err(ImportError::Repeated {
                line: line as u64,
                first: first as u64,
                key,
            }
            .into());
        }
    }
    Ok(())
}

/// Writes the staged batches to the store in order, each in its own transaction.
async fn write_batches(conn: &mut PgConnection, staged: &Staged) -> anyhow::Result<()> {
    let Some((_, highest)) = staged.events.positions else {
        return Ok(());
    };
    let mut claim = conn.begin().await?;
    event_log::lock_out_writers(&mut claim).await?;
    refuse_unless_empty(&mut claim).await?;
    // New events continue after the imported ones; and so anything appended during the
    // import shows as a position above them.
    event_log::continue_after(&mut claim, highest).await?;
    claim.commit().await?;

    let mut report = ProgressReport::new("import", staged.events.count);
    for batch in 0..staged.batches as i64 {
        let mut tx = conn.begin().await?;
        event_log::lock_out_writers(&mut tx).await?;
        if let Some(position) = event_log::first_above(&mut *tx, highest).await? {
            return Err(ImportError::WrittenMeanwhile(position).into());
        }
        let (rows, through) = event_log::append_staged(&mut tx, batch).await?;
        tx.commit().await?;
        report.advance(rows as u64, through);
    }
    report.finish(&format!("new events follow position {highest}"));
    Ok(())
}

/// Reads and checks `input` line by line, and hands the events on in chunks, in order.
fn read_input(input: Box<dyn Read + Send>, chunks: mpsc::Sender<Chunk>) -> anyhow::Result<Staged> {
    let mut input = BufReader::with_capacity(64 * 1024, input);
    let mut bytes = Vec::new();
    let mut line = 0;
    let mut previous: Option<LogPosition> = None;
    let mut batches = Batches::default();
    let mut events = Span::default();
    let mut latest = None;
    let mut chunk = Chunk::default();
    loop {
        bytes.clear();
        // One byte past the limit: a line of exactly the limit still has room for its break.
        let read = (&mut input)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut bytes)
            .context("reading the input")?;
        if read == 0 {
            break;
        }
        line += 1;
        let bad = |problem: String| ImportError::BadLine {
            line,
            problem: printable(&problem),
        };
        if bytes.len() > MAX_LINE_BYTES && bytes.last() != Some(&b'\n') {
            return Err(bad(format!(
                "longer than {MAX_LINE_BYTES} bytes, more than any event's line"
            ))
            .into());
        }
        if line == 1 {
            if let Ok(header) = serde_json::from_slice::<Header>(&bytes) {
                latest = header.simulator_latest;
                continue;
            }
        }
        let event = parse_line(&bytes).map_err(bad)?;
        if let Some(previous) = previous.filter(|previous| event.position <= *previous) {
            return Err(bad(format!(
                "out of log order: transaction {} position {} after transaction {} position {} \
                 (lines must stay in their exported order)",
                event.position.transaction_id,
                event.position.global_position,
                previous.transaction_id,
                previous.global_position
            ))
            .into());
        }
        previous = Some(event.position);
        events.add(event.position.global_position);
        chunk.push(line, batches.place(event.position.global_position), event);
        if chunk.len() == STAGE_ROWS {
            hand_to_stager(&chunks, &mut chunk)?;
        }
    }
    if chunk.len() > 0 {
        hand_to_stager(&chunks, &mut chunk)?;
    }
    Ok(Staged {
        events,
        latest,
        batches: batches.count(),
    })
}

fn hand_to_stager(chunks: &mpsc::Sender<Chunk>, chunk: &mut Chunk) -> anyhow::Result<()> {
    chunks
        .blocking_send(std::mem::take(chunk))
        // The staging side failed, and reports why.
        .map_err(|_| anyhow::anyhow!("the import stopped"))
}

/// Numbers the import's transactions, line by line: a new one when the current one is full, or
/// when a position is not above the previous one (within a transaction, positions increase).
#[derive(Debug, Default)]
struct Batches {
    current: i64,
    rows: usize,
    last_position: Option<i64>,
}

impl Batches {
    /// The batch of the next line, at `position`.
    fn place(&mut self, position: i64) -> i64 {
        match self.last_position {
            Some(last) if position > last && self.rows < BATCH_ROWS => self.rows += 1,
            Some(_) => {
                self.current += 1;
                self.rows = 1;
            }
            None => self.rows = 1,
        }
        self.last_position = Some(position);
        self.current
    }

    fn count(&self) -> u64 {
        match self.last_position {
            Some(_) => self.current as u64 + 1,
            None => 0,
        }
    }
}

/// Checked events, a column each, as the staging statement binds them.
#[derive(Debug, Default)]
struct Chunk {
    batch: Vec<i64>,
    line_number: Vec<i64>,
    global_position: Vec<i64>,
    recorded_at: Vec<DateTime<Utc>>,
    aggregate_type: Vec<String>,
    aggregate_id: Vec<String>,
    sequence: Vec<i64>,
    event_type: Vec<String>,
    event_version: Vec<String>,
    payload: Vec<String>,
    metadata: Vec<String>,
}

impl Chunk {
    fn push(&mut self, line: u64, batch: i64, event: Event) {
        self.batch.push(batch);
        self.line_number.push(line as i64);
        self.global_position.push(event.position.global_position);
        self.recorded_at.push(event.recorded_at);
        self.aggregate_type.push(event.aggregate_type);
        self.aggregate_id.push(event.aggregate_id);
        self.sequence.push(event.sequence);
        self.event_type.push(event.event_type);
        self.event_version.push(event.event_version);
        self.payload.push(event.payload);
        self.metadata.push(event.metadata);
    }

    fn len(&self) -> usize {
        self.line_number.len()
    }
}

/// One event to restore, as a checked line gives it.
#[derive(Debug)]
struct Event {
    /// Where the source had it (the transaction only orders the lines).
    position: LogPosition,
    recorded_at: DateTime<Utc>,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    /// The json columns' stored text.
    payload: String,
    metadata: String,
}

/// A line as exported. Unknown fields are refused: a newer export's extra column must not be
/// dropped without a word.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    global_position: i64,
    transaction_id: i64,
    recorded_at: DateTime<Utc>,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    #[serde(default, borrow, deserialize_with = "present")]
    payload: Option<&'a RawValue>,
    payload_text: Option<String>,
    #[serde(default, borrow, deserialize_with = "present")]
    metadata: Option<&'a RawValue>,
    metadata_text: Option<String>,
}

/// An embedded json text, `null` included: stored as a column's text, `null` is a value like
/// any other, not an absent field.
fn present<'de, D: Deserializer<'de>>(field: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(field).map(Some)
}

/// Reads one line, or says what is wrong with it.
fn parse_line(bytes: &[u8]) -> Result<Event, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|err| format!("not UTF-8 (at byte {})", err.valid_up_to() + 1))?;
    if text.trim().is_empty() {
        return Err("empty line".to_owned());
    }
    let line: Line = serde_json::from_str(text).map_err(describe)?;
    if line.global_position < 1 {
        return Err(format!(
            "global_position {} is not positive",
            line.global_position
        ));
    }
    if line.sequence < 0 {
        return Err(format!("sequence {} is negative", line.sequence));
    }
    Ok(Event {
        payload: stored_text("payload", line.payload, line.payload_text)?,
        metadata: stored_text("metadata", line.metadata, line.metadata_text)?,
        position: LogPosition {
            transaction_id: line.transaction_id,
            global_position: line.global_position,
        },
        recorded_at: line.recorded_at,
        aggregate_type: line.aggregate_type,
        aggregate_id: line.aggregate_id,
        sequence: line.sequence,
        event_type: line.event_type,
        event_version: line.event_version,
    })
}

/// A json column's stored text, from whichever of its two forms the line has.
fn stored_text(
    column: &str,
    embedded: Option<&RawValue>,
    text: Option<String>,
) -> Result<String, String> {
    match (embedded, text) {
        (Some(embedded), None) => Ok(embedded.get().to_owned()),
        (None, Some(text)) => match serde_json::from_str::<IgnoredAny>(&text) {
            Ok(_) => Ok(text),
            Err(err) => Err(format!("{column}_text is not JSON: {}", describe(err))),
        },
        (Some(_), Some(_)) => Err(format!("both `{column}` and `{column}_text`")),
        (None, None) => Err(format!("missing field `{column}`")),
    }
}

/// A JSON error without serde_json's "at line 1": each line is parsed on its own, and the
/// line that counts is the input's.
fn describe(err: serde_json::Error) -> String {
    let message = err.to_string();
    match message.rsplit_once(" at line ") {
        Some((problem, _)) => format!("{problem} (column {})", err.column()),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"global_position" : 7, "transaction_id" : 812, "recorded_at" : "2026-11-27T12:00:00.123456+00:00", "aggregate_type" : "message", "aggregate_id" : "m1", "sequence" : 1, "event_type" : "MessagePosted", "event_version" : "1.0", "payload" : { "b" :  1, "a":"\u00e9" }, "metadata" : null}"#;

    #[test]
    fn a_line_keeps_embedded_json_text_exactly() {
        let event = parse_line(LINE.as_bytes()).unwrap();
        assert_eq!(event.payload, r#"{ "b" :  1, "a":"\u00e9" }"#);
        assert_eq!(event.metadata, "null");
        assert_eq!(
            event.position,
            LogPosition {
                transaction_id: 812,
                global_position: 7
            }
        );
        assert_eq!(event.aggregate_id, "m1");
        assert_eq!(
            event.recorded_at.to_rfc3339(),
            "2026-11-27T12:00:00.123456+00:00"
        );
    }

    #[test]
    fn json_text_that_cannot_be_embedded_comes_as_a_string() {
        let line = LINE.replace(
            r#""metadata" : null"#,
            r#""metadata_text" : " {\"a\":\n 1} ""#,
        );
        assert_eq!(
            parse_line(line.as_bytes()).unwrap().metadata,
            " {\"a\":\n 1} "
        );
        let both = LINE.replace(
            r#""metadata" : null"#,
            r#""metadata" : {}, "metadata_text" : "{}""#,
        );
        assert_eq!(
            parse_line(both.as_bytes()).unwrap_err(),
            "both `metadata` and `metadata_text`"
        );
        let not_json = LINE.replace(r#""metadata" : null"#, r#""metadata_text" : "{""#);
        assert!(parse_line(not_json.as_bytes())
            .unwrap_err()
            .starts_with("metadata_text is not JSON: EOF while parsing"));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let problem = |line: &str| parse_line(line.as_bytes()).unwrap_err();
        let changed = |from: &str, to: &str| {
            assert!(LINE.contains(from), "{from}");
            problem(&LINE.replace(from, to))
        };
        assert_eq!(problem(""), "empty line");
        assert_eq!(
            parse_line(b"{\"a\xff\"}").unwrap_err(),
            "not UTF-8 (at byte 4)"
        );
        assert_eq!(
            problem(r#"{"global_position" : 7,"#),
            "EOF while parsing a value (column 23)"
        );
        assert!(changed(r#""sequence" : 1"#, r#""sequence" : 1, "x" : 1"#)
            .starts_with("unknown field `x`"));
        assert!(changed(r#""sequence" : 1, "#, "").starts_with("missing field `sequence`"));
        assert!(changed(r#""sequence" : 1"#, r#""sequence" : "1""#)
            .starts_with(r#"invalid type: string "1", expected i64"#));
        assert_eq!(
            changed(r#""sequence" : 1"#, r#""sequence" : -1"#),
            "sequence -1 is negative"
        );
        assert_eq!(
            changed(r#""global_position" : 7"#, r#""global_position" : 0"#),
            "global_position 0 is not positive"
        );
        assert!(changed("2026-11-27T12:00:00.123456+00:00", "yesterday")
            .starts_with("input contains invalid characters"));
        assert_eq!(
            changed(r#", "metadata" : null"#, ""),
            "missing field `metadata`"
        );
    }

    #[test]
    fn batches_hold_increasing_positions_and_at_most_batch_rows() {
        let mut batches = Batches::default();
        let placed: Vec<i64> = [3, 4, 1, 2, 5, 5, 6]
            .into_iter()
            .map(|position| batches.place(position))
            .collect();
        assert_eq!(placed, [0, 0, 1, 1, 1, 2, 2]);
        assert_eq!(batches.count(), 3);

        let mut batches = Batches::default();
        let last = (1..=2 * BATCH_ROWS as i64 + 1)
            .map(|position| batches.place(position))
            .last();
        assert_eq!(last, Some(2));
        assert_eq!(batches.count(), 3);
        assert_eq!(Batches::default().count(), 0);
    }

    #[test]
    fn summaries_read_as_one_line() {
        let mut events = Span::default();
        for position in [5, 3, 9] {
            events.add(position);
        }
        let summary = ImportSummary {
            events,
            source: "log.jsonl".into(),
            transactions: 2,
            elapsed: Duration::from_millis(1500),
        };
        assert_eq!(
            summary.to_string(),
            "imported 3 events (positions 3–9) from log.jsonl as 2 transactions in 1.5s (2 events/s)"
        );
        assert_eq!(Span::default().to_string(), "0 events");
    }
}
