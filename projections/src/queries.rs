//! The named read queries the HTTP layer calls, on the version of each view this process
//! reads (see [`crate::progress`]).
//!
//! Every timeline reads a partial index that leaves flagged messages out, newest first by
//! `pub_date` and then by log position. That pair is also the keyset by which timelines are
//! paged ([`crate::timelines::TimelineCursor`]): a page is "the next 30 after this key", never an OFFSET, so
//! messages posted while someone pages neither repeat nor go missing.

use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use domain::registration::is_storable;

use crate::accounts::Accounts;
use crate::blocks::Blocks;
use crate::progress::Progress;
use crate::projection::Projection;
use crate::timeline::Timeline;
use crate::timeline_cache::TimelineCache;
use crate::timelines::{TimelineEntry, TimelineScope, TimelineWindow};
use crate::view_marks::ViewMarksProbe;

/// A message as moderators see it: flagged or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeratedMessage {
    pub message_id: String,
    pub author: String,
    pub content: String,
    pub pub_date: i64,
    pub flagged: bool,
}

/// How a signed-in viewer stands to another user (both `false` for a visitor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileRelation {
    /// The viewer follows them.
    pub following: bool,
    /// They follow the viewer (with `following`, whether the two may talk).
    pub followed_by: bool,
    /// The viewer blocks their private messages.
    pub blocked: bool,
    /// They were forgotten: the page shows that the account was deleted, and nothing else.
    pub forgotten: bool,
}

/// What login needs to know about a user.
#[derive(Debug, Clone)]
pub struct Account {
    pub username: String,
    pub email: String,
    /// The stored password hash (argon2id PHC, or a legacy format being phased out).
    pub password_hash: String,
}

/// Read access to the projected views.
#[derive(Clone)]
pub struct ReadModels {
    pool: PgPool,
    /// Says which version of each view to read; it changes when a rebuilt one takes over.
    progress: Progress,
    /// The newest pages of timelines, while the views stand still.
    cache: TimelineCache,
    /// Where the views stand, which says whether a cached page still holds.
    marks: ViewMarksProbe,
}

impl ReadModels {
    /// Reads the versions of the views that `progress` says this process reads.
    pub fn new(pool: PgPool, progress: Progress) -> Self {
        Self {
            marks: ViewMarksProbe::new(pool.clone(), progress.clone()),
            pool,
            progress,
            cache: TimelineCache::default(),
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub(crate) fn accounts_schema(&self) -> String {
        self.progress.schema(Accounts.name())
    }

    pub(crate) fn schema_of(&self, projection: &dyn Projection) -> String {
        self.progress.schema(projection.name())
    }

    fn timeline_schema(&self) -> String {
        self.progress.schema(Timeline.name())
    }

    /// Whether `username` is a registered user, and not forgotten.
    pub async fn user_exists(&self, username: &str) -> Result<bool, sqlx::Error> {
        if !is_storable(username) {
            return Ok(false);
        }
        sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {}.users WHERE username = $1 AND NOT forgotten)",
            self.accounts_schema()
        ))
        .bind(username)
        .fetch_one(&self.pool)
        .await
    }

    /// The account of `username`, if registered and not forgotten.
    pub async fn account(&self, username: &str) -> Result<Option<Account>, sqlx::Error> {
        if !is_storable(username) {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT username, email, password_hash FROM {}.users \
             WHERE username = $1 AND NOT forgotten",
            self.accounts_schema()
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Account {
                username: row.try_get("username")?,
                email: row.try_get("email")?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    /// How `viewer` (when signed in) stands to the user `profile`, as their page shows it;
    /// `None` when `profile` is not a registered user (a forgotten one is, and says so). One
    /// statement, where a page would otherwise ask four times.
    pub async fn profile_seen_by(
        &self,
        profile: &str,
        viewer: Option<&str>,
    ) -> Result<Option<ProfileRelation>, sqlx::Error> {
        if !is_storable(profile) {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT EXISTS (SELECT 1 FROM {accounts}.follows \
                            WHERE follower = $2 AND followee = $1) AS following, \
                    EXISTS (SELECT 1 FROM {accounts}.follows \
                            WHERE follower = $1 AND followee = $2) AS followed_by, \
                    EXISTS (SELECT 1 FROM {blocks}.blocks \
                            WHERE blocker = $2 AND blocked = $1) AS blocked, \
                    forgotten \
             FROM {accounts}.users WHERE username = $1",
            accounts = self.accounts_schema(),
            blocks = self.schema_of(&Blocks),
        ))
        .bind(profile)
        .bind(viewer)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ProfileRelation {
                following: row.try_get("following")?,
                followed_by: row.try_get("followed_by")?,
                blocked: row.try_get("blocked")?,
                forgotten: row.try_get("forgotten")?,
            })
        })
        .transpose()
    }

    /// Whom `follower` follows, oldest follow first, at most `limit`.
    pub async fn followees(&self, follower: &str, limit: i64) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar(&format!(
            "SELECT followee FROM {}.follows WHERE follower = $1 ORDER BY position LIMIT $2",
            self.accounts_schema()
        ))
        .bind(follower)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Up to `limit` entries of the timeline `scope` in `window`, newest first.
    ///
    /// Each scope reads its partial index: the public one in key order, an author's by
    /// author, and "my" timeline as one short range of the per-author index for me and for
    /// each author I follow, merged. The newest entries come from the [`TimelineCache`] while
    /// the views stand where they stood when they were read.
    pub async fn timeline(
        &self,
        scope: TimelineScope<'_>,
        window: TimelineWindow,
        limit: i64,
    ) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        if window != TimelineWindow::Newest {
            return self.read_timeline(scope, window, limit).await;
        }
        let Some(marks) = self.marks.marks().await else {
            return self.read_timeline(scope, window, limit).await;
        };
        if let Some(entries) = self.cache.get(scope, limit, marks) {
            return Ok(entries);
        }
        let entries = self.read_timeline(scope, window, limit).await?;
        self.cache.put(scope, limit, marks, &entries);
        Ok(entries)
    }

    /// [`ReadModels::timeline`] read from the views.
    async fn read_timeline(
        &self,
        scope: TimelineScope<'_>,
        window: TimelineWindow,
        limit: i64,
    ) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        let mut entries = self
            .fetch_entries(self.timeline_query(scope, window, limit))
            .await?;
        if matches!(window, TimelineWindow::NewerThan(_)) {
            entries.reverse();
        }
        Ok(entries)
    }

    /// The SQL text a [`ReadModels::timeline`] read sends, with `$n` placeholders for its
    /// arguments in this order: the scope's user (once for an author, twice for "my"
    /// timeline), the window's cursor (`pub_date`, `position`), then `limit`. For tools that
    /// run the very same statement directly, such as the benchmark's `pgbench` reference.
    pub fn timeline_sql(
        &self,
        scope: TimelineScope<'_>,
        window: TimelineWindow,
        limit: i64,
    ) -> String {
        self.timeline_query(scope, window, limit).into_sql()
    }

    /// The statement behind [`ReadModels::timeline`]; a `NewerThan` window comes back oldest
    /// first, as the index is walked upwards from the cursor.
    fn timeline_query<'args>(
        &self,
        scope: TimelineScope<'args>,
        window: TimelineWindow,
        limit: i64,
    ) -> QueryBuilder<'args, Postgres> {
        let mut sql = self.entries_select();
        sql.push(" WHERE NOT m.flagged");
        match scope {
            TimelineScope::Public => {}
            TimelineScope::Author(author) => {
                sql.push(" AND m.author = ").push_bind(author);
            }
            TimelineScope::Personal(user) => {
                sql.push(" AND (m.author = ")
                    .push_bind(user)
                    .push(format_args!(
                        " OR m.author IN (SELECT followee FROM {}.follows WHERE follower = ",
                        self.accounts_schema()
                    ))
                    .push_bind(user)
                    .push("))");
            }
        }
        let (comparison, order) = match window {
            TimelineWindow::Newest => (None, "DESC"),
            TimelineWindow::OlderThan(cursor) => (Some(("<", cursor)), "DESC"),
            TimelineWindow::NewerThan(cursor) => (Some((">", cursor)), "ASC"),
        };
        if let Some((operator, cursor)) = comparison {
            sql.push(format_args!(" AND (m.pub_date, m.position) {operator} ("))
                .push_bind(cursor.pub_date)
                .push(", ")
                .push_bind(cursor.position)
                .push(")");
        }
        sql.push(format_args!(
            " ORDER BY m.pub_date {order}, m.position {order} LIMIT "
        ))
        .push_bind(limit);
        sql
    }

    /// Messages for moderators, flagged ones included, newest first: all of them, or those of
    /// `author`, or only the flagged ones; at most `limit`.
    pub async fn moderation_listing(
        &self,
        author: Option<&str>,
        flagged_only: bool,
        limit: i64,
    ) -> Result<Vec<ModeratedMessage>, sqlx::Error> {
        let mut sql = QueryBuilder::new(format!(
            "SELECT message_id, author, content, pub_date, flagged FROM {}.messages WHERE true",
            self.timeline_schema()
        ));
        if let Some(author) = author {
            sql.push(" AND author = ").push_bind(author);
        }
        if flagged_only {
            sql.push(" AND flagged");
        }
        sql.push(" ORDER BY pub_date DESC, position DESC LIMIT ")
            .push_bind(limit);
        self.moderated(sql).await
    }

    /// The messages among `message_ids` (flagged or not), for moderators.
    pub async fn moderated_by_id(
        &self,
        message_ids: &[String],
    ) -> Result<Vec<ModeratedMessage>, sqlx::Error> {
        let mut sql = QueryBuilder::new(format!(
            "SELECT message_id, author, content, pub_date, flagged FROM {}.messages \
             WHERE message_id = ANY(",
            self.timeline_schema()
        ));
        sql.push_bind(message_ids).push(")");
        self.moderated(sql).await
    }

    async fn moderated(
        &self,
        mut sql: QueryBuilder<'_, Postgres>,
    ) -> Result<Vec<ModeratedMessage>, sqlx::Error> {
        sql.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| {
                Ok(ModeratedMessage {
                    message_id: row.try_get("message_id")?,
                    author: row.try_get("author")?,
                    content: row.try_get("content")?,
                    pub_date: row.try_get("pub_date")?,
                    flagged: row.try_get("flagged")?,
                })
            })
            .collect()
    }

    /// The visible (unflagged) messages among `message_ids`, newest first.
    pub async fn entries_by_id(
        &self,
        message_ids: &[String],
    ) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        let mut sql = self.entries_select();
        sql.push(" WHERE NOT m.flagged AND m.message_id = ANY(")
            .push_bind(message_ids)
            .push(") ORDER BY m.pub_date DESC, m.position DESC");
        self.fetch_entries(sql).await
    }

    /// The start of every entry query: messages with their author's email. A left join,
    /// because the accounts view is projected separately and may briefly lag the timeline.
    fn entries_select<'args>(&self) -> QueryBuilder<'args, Postgres> {
        QueryBuilder::new(format!(
            "SELECT m.message_id, m.author, coalesce(u.email, '') AS author_email, m.content, \
                    m.pub_date, m.position \
             FROM {timeline}.messages m LEFT JOIN {accounts}.users u ON u.username = m.author",
            timeline = self.timeline_schema(),
            accounts = self.accounts_schema()
        ))
    }

    async fn fetch_entries(
        &self,
        mut sql: QueryBuilder<'_, Postgres>,
    ) -> Result<Vec<TimelineEntry>, sqlx::Error> {
        sql.build()
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(entry_from_row)
            .collect()
    }
}

fn entry_from_row(row: &PgRow) -> Result<TimelineEntry, sqlx::Error> {
    Ok(TimelineEntry {
        message_id: row.try_get("message_id")?,
        author: row.try_get("author")?,
        author_email: row.try_get("author_email")?,
        content: row.try_get("content")?,
        pub_date: row.try_get("pub_date")?,
        position: row.try_get("position")?,
    })
}
