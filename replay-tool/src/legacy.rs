//! `import-legacy`: turning an original ITU-MiniTwit SQLite database (tables `user`,
//! `follower`, `message`) into events — through the domain's commands, so every rule a
//! server enforces holds for imported data too.
//!
//! The source is opened read-only and read into memory on the blocking pool first (the
//! course's databases are small); then the rows become commands, in this order:
//!
//! - **Users** (by `user_id`) → `Register`, keeping the werkzeug `pw_hash` as the password
//!   hash: the server verifies werkzeug hashes and upgrades them at the first sign-in, so
//!   people keep their passwords. A username already used by a lower `user_id` is skipped:
//!   the original signed that name in as the first row, so the later one was never reachable.
//! - **Follows** (in the table's insertion order) → `Follow`; a pair listed again is a
//!   duplicate that collapses into the first.
//! - **Messages**, oldest first (`pub_date`, then `message_id`, so that equal dates keep the
//!   original's order: timelines break ties by log position) → `Post` at the original
//!   `pub_date`, then `Flag` if the row was flagged, recorded as the legacy moderators'
//!   decision.
//!
//! Rows naming users that were not imported, and rows the domain refuses (an email without
//! `@`, a NUL character), are skipped and listed in the [`LegacyReport`]; the rest still
//! imports.
//!
//! **Idempotent.** Importing a file again — to finish an interrupted import, or by mistake —
//! adds no event. A user whose name is taken is "already present" only if the stream's
//! registration holds this row's email and password hash; a name that another account holds
//! is not handed that account's follows and messages. A message's aggregate id is a UUIDv5 of
//! the legacy row, so posting it again is refused as already posted, and it is flagged only
//! if no moderation decision was ever recorded on it (one that was is newer than the legacy
//! flag). A follow is sent only if the follower never followed that user, so a follow that
//! was undone since the import stays undone.
//!
//! **Times.** The original records when a message was posted, nothing else; the other times
//! are derived from those, deterministically (see `registration_times`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use commands::CommandContext;
use commands::{CommandBus, CommandError};
use database::event_log;
use domain::registration::is_storable;
use domain::{
    MessageCommand, MessageError, Moderation, PasswordHash, RegistrationError, UserCommand,
    UserError, UserEvent,
};
use projections::log::Decode as _;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use sqlx::PgPool;
use uuid::Uuid;

use crate::admin::Admin;
use crate::report::ProgressReport;
use crate::terminal::printable;

/// The namespace of imported messages' ids, chosen at random once. Changing it would give
/// every legacy message a new id, and a re-import would post them all a second time.
const LEGACY_MESSAGES: Uuid = Uuid::from_u128(0x5ab7_7067_e4ba_4e99_a5ac_f017_7498_35fe);

/// How the imported moderation decisions are recorded: the legacy database keeps neither who
/// flagged a message nor why.
const MODERATOR: &str = "legacy import";
const MODERATION_REASON: &str = "flagged in the legacy database";

/// Skipped rows listed in the report; the rest are only counted.
const SKIPPED_LISTED: usize = 20;

/// Why the source could not be read at all. Nothing is imported then.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is a directory, not an SQLite database", .path.display())]
    Directory { path: PathBuf },
    #[error("{} is not an SQLite database", .path.display())]
    NotSqlite { path: PathBuf },
    #[error(
        "{} is not an ITU-MiniTwit database: it has no table {}",
        .path.display(),
        .tables.join(", no table ")
    )]
    MissingTables {
        path: PathBuf,
        tables: Vec<&'static str>,
    },
    #[error("reading {}", .path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// A legacy row that was not imported.
#[derive(Debug)]
pub struct Skipped {
    pub row: LegacyRow,
    pub reason: SkipReason,
}

/// A row of the legacy database, by its identity there. Ordered by table, then identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LegacyRow {
    User(i64),
    /// `follower` has no key; its SQLite `rowid` tells its rows apart.
    Follow(i64),
    Message(i64),
}

impl fmt::Display for LegacyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user {id}"),
            Self::Follow(rowid) => write!(f, "follower row {rowid}"),
            Self::Message(id) => write!(f, "message {id}"),
        }
    }
}

/// Why a row was skipped.
#[derive(Debug, thiserror::Error)]
pub enum SkipReason {
    /// NULL, not UTF-8, not a number, or holding what PostgreSQL cannot store.
    #[error("{column} {problem}")]
    Unusable {
        column: &'static str,
        problem: &'static str,
    },
    #[error("{column} {id} is no user_id in the user table")]
    UnknownUser { column: &'static str, id: i64 },
    #[error("{column} {id} names a user that was skipped")]
    UserSkipped { column: &'static str, id: i64 },
    #[error("user {first} has the same username")]
    DuplicateUsername { first: i64 },
    #[error("the username belongs to another account, not imported from this row")]
    TakenByAnotherAccount,
    #[error("{0}")]
    UserRefused(UserError),
    #[error("{0}")]
    MessageRefused(MessageError),
}

fn unusable(column: &'static str, problem: &'static str) -> SkipReason {
    SkipReason::Unusable { column, problem }
}

/// What became of one table's rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub imported: usize,
    /// Imported before (by an earlier run on this file): nothing recorded.
    pub already_present: usize,
    pub skipped: usize,
}

impl Tally {
    fn rows(&self) -> usize {
        self.imported + self.already_present + self.skipped
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} imported, {} already present, {} skipped",
            self.imported, self.already_present, self.skipped
        )
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct LegacyReport {
    pub source: PathBuf,
    pub users: Tally,
    pub follows: Tally,
    /// Rows of `follower` repeating an earlier row's pair.
    pub duplicate_follows: usize,
    pub messages: Tally,
    /// Messages hidden because the legacy database had them flagged.
    pub flagged: usize,
    /// Every skipped row, users' first, then follows', then messages'.
    pub skipped: Vec<Skipped>,
    pub elapsed: Duration,
}

impl LegacyReport {
    fn new(source: &Path) -> Self {
        Self {
            source: source.to_owned(),
            ..Self::default()
        }
    }

    fn tally(&mut self, row: LegacyRow) -> &mut Tally {
        match row {
            LegacyRow::User(_) => &mut self.users,
            LegacyRow::Follow(_) => &mut self.follows,
            LegacyRow::Message(_) => &mut self.messages,
        }
    }

    fn skip(&mut self, row: LegacyRow, reason: SkipReason) {
        self.tally(row).skipped += 1;
        self.skipped.push(Skipped { row, reason });
    }
}

impl fmt::Display for LegacyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows =
            self.users.rows() + self.follows.rows() + self.duplicate_follows + self.messages.rows();
        let seconds = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "{}: {rows} rows in {seconds:.1}s ({:.0} rows/s)",
            printable(&self.source.display().to_string()),
            rows as f64 / seconds.max(1e-3)
        )?;
        writeln!(f, "users: {}", self.users)?;
        writeln!(
            f,
            "follows: {}; {} duplicates collapsed",
            self.follows, self.duplicate_follows
        )?;
        write!(f, "messages: {}; {} flagged", self.messages, self.flagged)?;
        if !self.skipped.is_empty() {
            write!(f, "\nskipped:")?;
            for Skipped { row, reason } in self.skipped.iter().take(SKIPPED_LISTED) {
                // Reasons quote usernames from the source (in the domain's refusals).
                write!(f, "\n  {row}: {}", printable(&reason.to_string()))?;
            }
            if self.skipped.len() > SKIPPED_LISTED {
                write!(f, "\n  and {} more", self.skipped.len() - SKIPPED_LISTED)?;
            }
        }
        Ok(())
    }
}

/// Imports the ITU-MiniTwit database at `path` through `admin`'s database (see the module
/// documentation). Rows that cannot be imported are skipped and reported; an error means
/// the source is unreadable, or the store failed — after which running it again finishes.
pub async fn import_legacy(admin: &Admin, path: &Path) -> anyhow::Result<LegacyReport> {
    let started = Instant::now();
    let source = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || read_source(&path)).await??
    };
    let context = CommandContext {
        request_id: Some(format!("minitwit-replay-import-legacy-{}", Uuid::now_v7())),
        received_at: Utc::now(),
        latest: None,
    };
    let mut import = Import {
        // No waiting for views: nothing may be projecting while the tool runs.
        commands: admin.commands(Duration::ZERO).await?,
        pool: admin.pool.clone(),
        registered_at: registration_times(&source, context.received_at),
        context,
        accounts: Accounts {
            imported: HashMap::new(),
            in_source: source.user_ids,
        },
        report: LegacyReport::new(path),
    };
    for Skipped { row, reason } in source.unreadable {
        import.report.skip(row, reason);
    }
    import.users(&source.users).await?;
    import.follows(&source.follows).await?;
    import.messages(&source.messages).await?;
    let mut report = import.report;
    report.skipped.sort_by_key(|skipped| skipped.row);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// A `user` row.
struct LegacyUser {
    id: i64,
    username: String,
    email: String,
    pw_hash: String,
}

/// A `follower` row, by its `rowid`.
struct LegacyFollow {
    rowid: i64,
    who: i64,
    whom: i64,
}

/// A `message` row.
struct LegacyMessage {
    id: i64,
    author: i64,
    text: String,
    posted_at: DateTime<Utc>,
    flagged: bool,
}

/// The legacy database, read. Rows with unusable columns are not among the others but in
/// `unreadable`.
struct Source {
    /// By `user_id`.
    users: Vec<LegacyUser>,
    /// Every `user_id`, of readable rows or not.
    user_ids: HashSet<i64>,
    /// In insertion order.
    follows: Vec<LegacyFollow>,
    /// Oldest first; equal dates by `message_id`.
    messages: Vec<LegacyMessage>,
    unreadable: Vec<Skipped>,
}

const TABLES: [&str; 3] = ["user", "follower", "message"];

/// Reads the whole database at `path`, opened read-only. Blocking.
fn read_source(path: &Path) -> Result<Source, SourceError> {
    // SQLite would say only "unable to open database file"; the file system says why.
    let metadata = std::fs::metadata(path).map_err(|source| SourceError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    if metadata.is_dir() {
        return Err(SourceError::Directory {
            path: path.to_owned(),
        });
    }
    let sqlite = |source: rusqlite::Error| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => SourceError::NotSqlite {
            path: path.to_owned(),
        },
        _ => SourceError::Sqlite {
            path: path.to_owned(),
            source,
        },
    };
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    let mut missing = Vec::new();
    for table in TABLES {
        let present: bool = connection
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                 WHERE type = 'table' AND name = ?1 COLLATE NOCASE)",
                [table],
                |row| row.get(0),
            )
            .map_err(sqlite)?;
        if !present {
            missing.push(table);
        }
    }
    if !missing.is_empty() {
        return Err(SourceError::MissingTables {
            path: path.to_owned(),
            tables: missing,
        });
    }
    read_rows(&connection).map_err(sqlite)
}

/// The three tables' rows. The original declared its text columns `string`, which SQLite
/// gives NUMERIC affinity: a username or message that looked like a number was stored as one.
/// The queries cast them back to text, as the original's pages showed them.
fn read_rows(connection: &Connection) -> rusqlite::Result<Source> {
    let mut unreadable = Vec::new();
    let mut user_ids = HashSet::new();
    let mut users = Vec::new();
    let mut statement = connection.prepare(
        "SELECT user_id, CAST(username AS TEXT), CAST(email AS TEXT), CAST(pw_hash AS TEXT) \
         FROM user ORDER BY user_id",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id = row.get(0)?;
        user_ids.insert(id);
        let user = match (
            text(row.get_ref(1)?, "username"),
            text(row.get_ref(2)?, "email"),
            text(row.get_ref(3)?, "pw_hash"),
        ) {
            // The domain checks names and emails; nothing but this checks a hash.
            (Ok(_), Ok(_), Ok(pw_hash)) if !is_storable(&pw_hash) => {
                Err(unusable("pw_hash", "contains the NUL character"))
            }
            (Ok(username), Ok(email), Ok(pw_hash)) => Ok(LegacyUser {
                id,
                username,
                email,
                pw_hash,
            }),
            (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => Err(reason),
        };
        keep(user, LegacyRow::User(id), &mut users, &mut unreadable);
    }

    let mut follows = Vec::new();
    let mut statement =
        connection.prepare("SELECT rowid, who_id, whom_id FROM follower ORDER BY rowid")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let rowid = row.get(0)?;
        let follow = match (
            user_id(row.get_ref(1)?, "who_id"),
            user_id(row.get_ref(2)?, "whom_id"),
        ) {
            (Ok(who), Ok(whom)) => Ok(LegacyFollow { rowid, who, whom }),
            (Err(reason), _) | (_, Err(reason)) => Err(reason),
        };
        keep(
            follow,
            LegacyRow::Follow(rowid),
            &mut follows,
            &mut unreadable,
        );
    }

    let mut messages = Vec::new();
    let mut statement = connection.prepare(
        "SELECT message_id, author_id, CAST(text AS TEXT), pub_date, \
                flagged IS NOT NULL AND flagged != 0 \
         FROM message",
    )?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let id = row.get(0)?;
        let flagged = row.get(4)?;
        let message = match (
            user_id(row.get_ref(1)?, "author_id"),
            text(row.get_ref(2)?, "text"),
            posted_at(row.get_ref(3)?),
        ) {
            (Ok(author), Ok(text), Ok(posted_at)) => Ok(LegacyMessage {
                id,
                author,
                text,
                posted_at,
                flagged,
            }),
            (Err(reason), _, _) | (_, Err(reason), _) | (_, _, Err(reason)) => Err(reason),
        };
        keep(
            message,
            LegacyRow::Message(id),
            &mut messages,
            &mut unreadable,
        );
    }
    messages.sort_by_key(|message| (message.posted_at, message.id));
    Ok(Source {
        users,
        user_ids,
        follows,
        messages,
        unreadable,
    })
}

/// Sorts a parsed `row` into `rows`, or into `unreadable` with the reason it could not be.
fn keep<T>(
    parsed: Result<T, SkipReason>,
    row: LegacyRow,
    rows: &mut Vec<T>,
    unreadable: &mut Vec<Skipped>,
) {
    match parsed {
        Ok(parsed) => rows.push(parsed),
        Err(reason) => unreadable.push(Skipped { row, reason }),
    }
}

/// A column cast to text.
fn text(value: ValueRef<'_>, column: &'static str) -> Result<String, SkipReason> {
    match value {
        ValueRef::Text(bytes) => {
            String::from_utf8(bytes.to_vec()).map_err(|_| unusable(column, "is not UTF-8 text"))
        }
        ValueRef::Null => Err(unusable(column, "is NULL")),
        _ => Err(unusable(column, "is not text")),
    }
}

fn user_id(value: ValueRef<'_>, column: &'static str) -> Result<i64, SkipReason> {
    match value {
        ValueRef::Integer(id) => Ok(id),
        ValueRef::Null => Err(unusable(column, "is NULL")),
        _ => Err(unusable(column, "is not an integer")),
    }
}

/// `pub_date`, Unix seconds. The original wrote `int(time.time())`; a fraction (a variant
/// that forgot the `int`) is kept to the microsecond. A message with no date is skipped: any
/// date made up for it would place it in the timelines somewhere it never was.
fn posted_at(value: ValueRef<'_>) -> Result<DateTime<Utc>, SkipReason> {
    let posted_at = match value {
        ValueRef::Integer(seconds) => DateTime::from_timestamp(seconds, 0),
        ValueRef::Real(seconds) if seconds.is_finite() => {
            DateTime::from_timestamp_micros((seconds * 1e6).round() as i64)
        }
        ValueRef::Null => return Err(unusable("pub_date", "is NULL")),
        _ => return Err(unusable("pub_date", "is not a number of seconds")),
    };
    posted_at.ok_or(unusable("pub_date", "is out of range"))
}

/// When each user registered, by `user_id`; the original did not record it.
///
/// `user_id`s were handed out in registration order, and nobody posts before registering, so
/// a user registered no later than the earliest message by them *or by anyone registered after
/// them*. That bound is what is used: it keeps the original's registration order, and no
/// message predates its author. A user registered after everyone who ever posted gets the
/// newest `pub_date` in the source — the last moment it vouches for — and a source with no
/// dated message at all, `fallback` (the import's time: nothing in it tells time).
fn registration_times(source: &Source, fallback: DateTime<Utc>) -> HashMap<i64, DateTime<Utc>> {
    let mut earliest_by_author = BTreeMap::<i64, DateTime<Utc>>::new();
    for message in &source.messages {
        earliest_by_author
            .entry(message.author)
            .and_modify(|earliest| *earliest = (*earliest).min(message.posted_at))
            .or_insert(message.posted_at);
    }
    let newest = source.messages.last().map_or(fallback, |m| m.posted_at);
    // Users from the highest id down, taking in the messages of every author at or above it.
    let mut authors_above = earliest_by_author.into_iter().rev().peekable();
    let mut bound: Option<DateTime<Utc>> = None;
    source
        .users
        .iter()
        .rev()
        .map(|user| {
            while let Some((_, earliest)) = authors_above.next_if(|(author, _)| *author >= user.id)
            {
                bound = Some(bound.map_or(earliest, |bound| bound.min(earliest)));
            }
            (user.id, bound.unwrap_or(newest))
        })
        .collect()
}

/// An imported user (by this run or an earlier one).
struct Account {
    username: String,
    registered_at: DateTime<Utc>,
    /// Whom the user has ever followed, according to the log.
    followed: HashSet<String>,
}

/// The users imported (by this run or an earlier one), by `user_id`, and which ids the source
/// has at all: a row naming a skipped user is told apart from a row naming nobody.
struct Accounts {
    imported: HashMap<i64, Account>,
    in_source: HashSet<i64>,
}

impl Accounts {
    /// The imported user `id`, named by the source's `column`.
    fn get(&self, column: &'static str, id: i64) -> Result<&Account, SkipReason> {
        match self.imported.get(&id) {
            Some(account) => Ok(account),
            None if self.in_source.contains(&id) => Err(SkipReason::UserSkipped { column, id }),
            None => Err(SkipReason::UnknownUser { column, id }),
        }
    }
}

/// An import under way.
struct Import {
    commands: Arc<CommandBus>,
    pool: PgPool,
    context: CommandContext,
    registered_at: HashMap<i64, DateTime<Utc>>,
    accounts: Accounts,
    report: LegacyReport,
}

impl Import {
    async fn users(&mut self, users: &[LegacyUser]) -> anyhow::Result<()> {
        // The original signed a name in as its first row; a later row of that name was
        // nobody's to sign in as, even when the first cannot be imported.
        let mut first_of_name = HashMap::<&str, i64>::new();
        for user in users {
            let row = LegacyRow::User(user.id);
            if let Some(&first) = first_of_name.get(user.username.as_str()) {
                self.report
                    .skip(row, SkipReason::DuplicateUsername { first });
                continue;
            }
            first_of_name.insert(&user.username, user.id);
            let registered_at = self.registered_at[&user.id];
            let command = UserCommand::Register {
                username: user.username.clone(),
                email: user.email.clone(),
                password_hash: PasswordHash::new(user.pw_hash.clone()),
                registered_at,
            };
            let followed = match self
                .commands
                .user(&user.username, command, &self.context)
                .await
            {
                Ok(()) => {
                    self.report.users.imported += 1;
                    HashSet::new()
                }
                Err(CommandError::Rejected(UserError::Registration(
                    RegistrationError::UsernameTaken,
                ))) => match previous_import(&self.commands, user)
                    .await
                    .with_context(|| format!("importing {row}"))?
                {
                    Some(followed) => {
                        self.report.users.already_present += 1;
                        followed
                    }
                    None => {
                        self.report.skip(row, SkipReason::TakenByAnotherAccount);
                        continue;
                    }
                },
                Err(err) => {
                    let refusal = refusal(row, err)?;
                    self.report.skip(row, SkipReason::UserRefused(refusal));
                    continue;
                }
            };
            let account = Account {
                username: user.username.clone(),
                registered_at,
                followed,
            };
            self.accounts.imported.insert(user.id, account);
        }
        Ok(())
    }

    async fn follows(&mut self, follows: &[LegacyFollow]) -> anyhow::Result<()> {
        let mut seen = HashSet::new();
        for follow in follows {
            let row = LegacyRow::Follow(follow.rowid);
            if !seen.insert((follow.who, follow.whom)) {
                self.report.duplicate_follows += 1;
                continue;
            }
            let (follower, followee) = match (
                self.accounts.get("who_id", follow.who),
                self.accounts.get("whom_id", follow.whom),
            ) {
                (Ok(follower), Ok(followee)) => (follower, followee),
                (Err(reason), _) | (_, Err(reason)) => {
                    self.report.skip(row, reason);
                    continue;
                }
            };
            if follower.followed.contains(&followee.username) {
                self.report.follows.already_present += 1;
                continue;
            }
            // The original does not say when; not before both had registered.
            let command = UserCommand::Follow {
                followee: followee.username.clone(),
                followed_at: follower.registered_at.max(followee.registered_at),
            };
            let follower = follower.username.clone();
            match self.commands.user(&follower, command, &self.context).await {
                Ok(()) => self.report.follows.imported += 1,
                Err(err) => {
                    let refusal = refusal(row, err)?;
                    self.report.skip(row, SkipReason::UserRefused(refusal));
                }
            }
        }
        Ok(())
    }

    async fn messages(&mut self, messages: &[LegacyMessage]) -> anyhow::Result<()> {
        let mut progress = ProgressReport::counting(
            "legacy messages",
            messages.len() as u64,
            "messages",
            "legacy message",
        );
        for message in messages {
            progress.advance(1, message.id);
            let row = LegacyRow::Message(message.id);
            let author = match self.accounts.get("author_id", message.author) {
                Ok(author) => author.username.clone(),
                Err(reason) => {
                    self.report.skip(row, reason);
                    continue;
                }
            };
            let message_id = legacy_message_id(message, &author);
            let command = MessageCommand::Post {
                author,
                content: message.text.clone(),
                posted_at: message.posted_at,
            };
            let posted_now = match self
                .commands
                .message(&message_id, command, &self.context)
                .await
            {
                Ok(()) => {
                    self.report.messages.imported += 1;
                    true
                }
                Err(CommandError::Rejected(MessageError::AlreadyPosted)) => {
                    self.report.messages.already_present += 1;
                    false
                }
                Err(err) => {
                    let refusal = refusal(row, err)?;
                    self.report.skip(row, SkipReason::MessageRefused(refusal));
                    continue;
                }
            };
            // A message posted before is flagged only if nobody decided on it since: an
            // earlier run may have stopped between posting and flagging it.
            let to_flag = message.flagged
                && (posted_now
                    || !event_log::ever_moderated(&self.pool, &message_id)
                        .await
                        .with_context(|| format!("importing {row}"))?);
            if to_flag {
                let command = MessageCommand::Flag {
                    // The original does not say when; this is when this system learnt it.
                    flagged_at: self.context.received_at,
                    moderation: Moderation {
                        moderator: MODERATOR.to_owned(),
                        reason: MODERATION_REASON.to_owned(),
                    },
                };
                self.commands
                    .message(&message_id, command, &self.context)
                    .await
                    .map_err(|err| failed(row, err))?;
                self.report.flagged += 1;
            }
        }
        progress.finish("done");
        Ok(())
    }
}

/// The aggregate id of a legacy message: a UUIDv5 of everything that identifies the row, so
/// the same row always names the same stream, and a different database's message 42 another.
fn legacy_message_id(message: &LegacyMessage, author: &str) -> String {
    // JSON keeps the parts apart unambiguously, whatever the text holds.
    let identity = serde_json::json!([
        message.id,
        author,
        message.posted_at.timestamp_micros(),
        message.text
    ]);
    Uuid::new_v5(&LEGACY_MESSAGES, identity.to_string().as_bytes()).to_string()
}

/// When `user`'s name is taken: whom the stream has ever followed, if its registration is
/// this row's (same email and password hash, i.e. an earlier import of it); `None` if another
/// account has the name. Events are read as every reader of the log reads them: upcast to
/// their current versions.
async fn previous_import(
    commands: &CommandBus,
    user: &LegacyUser,
) -> anyhow::Result<Option<HashSet<String>>> {
    let mut events = event_log::registration_and_follows(commands.pool(), &user.username).await?;
    commands.keys().open_events(&mut events).await?;
    let upcasters = domain::upcasting::upcasters();
    let mut this_row = false;
    let mut followed = HashSet::new();
    for event in &events {
        match event.decode::<domain::User>(&upcasters)?.payload {
            UserEvent::UserRegistered {
                email,
                password_hash,
                ..
            } => this_row = email == user.email && password_hash.as_str() == user.pw_hash,
            UserEvent::UserFollowed { followee, .. } => {
                followed.insert(followee);
            }
            UserEvent::UserUnfollowed { .. }
            | UserEvent::PasswordHashUpgraded { .. }
            | UserEvent::PasswordChanged { .. }
            | UserEvent::EmailChanged { .. }
            | UserEvent::UserForgotten { .. }
            | UserEvent::UserBlocked { .. }
            | UserEvent::UserUnblocked { .. } => {}
        }
    }
    Ok(this_row.then_some(followed))
}

/// A refusal by an aggregate, which may also carry a failure of its directory lookup (the
/// store, not the row, is at fault then).
trait Refusal: std::error::Error + Send + Sync + 'static {
    fn is_lookup_failure(&self) -> bool;
}

impl Refusal for UserError {
    fn is_lookup_failure(&self) -> bool {
        matches!(self, Self::Directory(_))
    }
}

impl Refusal for MessageError {
    fn is_lookup_failure(&self) -> bool {
        matches!(self, Self::Directory(_))
    }
}

/// Why the domain refused `row`'s command — the row is skipped — or, if the store failed, the
/// error that stops the import.
fn refusal<E: Refusal>(row: LegacyRow, err: CommandError<E>) -> anyhow::Result<E> {
    match err {
        CommandError::Rejected(refusal) if !refusal.is_lookup_failure() => Ok(refusal),
        failure => Err(failed(row, failure)),
    }
}

/// The store failed on `row`: the import stops there.
fn failed<E: Refusal>(row: LegacyRow, err: CommandError<E>) -> anyhow::Error {
    anyhow::Error::new(err).context(format!(
        "importing {row} (the rows before it are imported; the import is idempotent: run it \
         again to finish)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    fn user(id: i64) -> LegacyUser {
        LegacyUser {
            id,
            username: format!("user {id}"),
            email: format!("{id}@example.org"),
            pw_hash: String::new(),
        }
    }

    fn message(id: i64, author: i64, seconds: i64) -> LegacyMessage {
        LegacyMessage {
            id,
            author,
            text: format!("message {id}"),
            posted_at: at(seconds),
            flagged: false,
        }
    }

    fn source(users: Vec<LegacyUser>, mut messages: Vec<LegacyMessage>) -> Source {
        messages.sort_by_key(|message| (message.posted_at, message.id));
        Source {
            user_ids: users.iter().map(|user| user.id).collect(),
            users,
            follows: Vec::new(),
            messages,
            unreadable: Vec::new(),
        }
    }

    #[test]
    fn users_register_in_id_order_before_anything_they_or_later_users_posted() {
        // 4 posts first at 300, then 1 at 500; 2 and 3 posted nothing; 6 (absent author) at 200.
        let source = source(
            (1..=5).map(user).collect(),
            vec![
                message(1, 1, 500),
                message(2, 4, 300),
                message(3, 1, 600),
                message(4, 6, 200),
            ],
        );
        let times = registration_times(&source, at(9_999));
        assert_eq!(times[&1], at(200));
        assert_eq!(times[&4], at(200));
        assert_eq!(times[&5], at(200));
        let source = self::source(
            (1..=5).map(user).collect(),
            vec![message(1, 1, 500), message(2, 3, 300)],
        );
        let times = registration_times(&source, at(9_999));
        assert_eq!(
            [1, 2, 3, 4, 5].map(|id| times[&id]),
            [at(300), at(300), at(300), at(500), at(500)],
            "later users than every author get the newest date"
        );
        let times = registration_times(&self::source(vec![user(1)], Vec::new()), at(9_999));
        assert_eq!(times[&1], at(9_999), "with no dates, the fallback");
    }

    #[test]
    fn message_ids_are_stable_and_differ_with_any_part_of_the_row() {
        let original = message(42, 1, 1_300_000_000);
        let id = legacy_message_id(&original, "alice");
        assert_eq!(
            id,
            legacy_message_id(&message(42, 1, 1_300_000_000), "alice")
        );
        assert_eq!(Uuid::parse_str(&id).unwrap().get_version_num(), 5);
        assert_ne!(id, legacy_message_id(&original, "bob"));
        assert_ne!(
            id,
            legacy_message_id(&message(43, 1, 1_300_000_000), "alice")
        );
        assert_ne!(
            id,
            legacy_message_id(&message(42, 1, 1_300_000_001), "alice")
        );
        let edited = LegacyMessage {
            text: "other".into(),
            ..message(42, 1, 1_300_000_000)
        };
        assert_ne!(id, legacy_message_id(&edited, "alice"));
    }

    #[test]
    fn pub_dates_are_seconds_possibly_fractional() {
        assert_eq!(
            posted_at(ValueRef::Integer(1_300_000_000)).unwrap(),
            at(1_300_000_000)
        );
        assert_eq!(
            posted_at(ValueRef::Real(1.5)).unwrap(),
            DateTime::from_timestamp_micros(1_500_000).unwrap()
        );
        assert!(posted_at(ValueRef::Null).is_err());
        assert!(posted_at(ValueRef::Real(f64::NAN)).is_err());
        assert!(posted_at(ValueRef::Integer(i64::MAX)).is_err());
        assert!(posted_at(ValueRef::Text(b"yesterday")).is_err());
    }

    #[test]
    fn the_report_lists_a_capped_number_of_skipped_rows() {
        let mut report = LegacyReport::new(Path::new("/tmp/minitwit.db"));
        for id in 0..25 {
            report.skip(LegacyRow::Message(id), unusable("pub_date", "is NULL"));
        }
        let shown = report.to_string();
        assert!(shown.contains("messages: 0 imported, 0 already present, 25 skipped"));
        assert!(shown.contains("\n  message 19: pub_date is NULL\n  and 5 more"));
        assert!(!shown.contains("message 20:"));
    }
}
