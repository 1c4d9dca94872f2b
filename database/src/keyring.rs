//! The data keys: their table, the master key check, and the unwrapped keys this process
//! keeps (see [`crate::sealing`] for the cryptography, and the `data_keys` migration).
//!
//! **Making keys.** A person's key is made the first time one of their events is sealed:
//! one statement inserts a new key unless there is one, and only if another writer made it
//! first does a second read it. A key is never replaced: two writers cannot seal one
//! person's data with different keys.
//!
//! **Forgetting.** [`Keyring::forget`] deletes the key and leaves a tombstone. Readers then
//! open the person's fields as empty strings, knowingly; a subject with no row at all is an
//! error instead (a log restored without its keys), never silently blank.
//!
//! **Keeping keys.** Unwrapped keys are kept in memory, bounded, to spare a round trip per
//! event. A key forgotten by another replica may be used here until it is evicted: by the
//! `data_keys_forgotten` notification ([`Keyring::evict`]), or by memory pressure. That is
//! harmless for what the views show — forgetting also records events that make every view
//! drop the person's data, which come after anything opened with the old key — and a write
//! needs the person's stream to say they are not forgotten, which it reads fresh.

use std::collections::HashMap;
use std::sync::Arc;

use quick_cache::sync::Cache;
use sqlx::{PgExecutor, PgPool, Row as _};

use crate::event_log::StoredEvent;
use crate::sealing::{self, DataKey, EventIdentity, MasterKey, Opening, SealError};

/// How many unwrapped keys a process keeps.
const KEPT_KEYS: usize = 100_000;

/// The metadata entry [`Keyring::open_events`] adds to an event whose personal fields
/// belonged to a forgotten person (they read empty): the views keep nothing of such an event,
/// whenever it reaches them.
pub const FORGOTTEN_MARK: &str = "personal_data_forgotten";

/// The channel on which a forgetting is announced to every replica (by the table's trigger).
pub const FORGOTTEN_CHANNEL: &str = "data_keys_forgotten";

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The process was started without a master key: it can neither seal nor open.
    #[error("no master key is configured (MINITWIT_MASTER_KEY_FILE), so personal data cannot be sealed or opened")]
    NoMasterKey,
    /// The person was forgotten: their data may not be written again.
    #[error("{0:?} was forgotten")]
    Forgotten(String),
    /// Sealed data names a person who has no key at all: the log was restored without its
    /// keys (see the README's restore procedure).
    #[error("no data key for {0:?}: were the keys restored with the events?")]
    Missing(String),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Why the keyring would not open at start.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The configured master key is not the one this database's keys are wrapped with.
    #[error("the master key does not match the one this database's data keys are wrapped with; refusing to start rather than fail on every personal field (check MINITWIT_MASTER_KEY_FILE)")]
    WrongMasterKey,
    #[error("checking the master key: {0}")]
    Database(#[from] sqlx::Error),
}

/// The data keys, as a cheap handle; clones share their kept keys.
#[derive(Clone)]
pub struct Keyring {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    pool: PgPool,
    /// Without one, keys can be deleted but neither made nor opened.
    master: Option<MasterKey>,
    kept: Cache<String, DataKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("database", &self.inner.is_some())
            .field(
                "master_key",
                &self
                    .inner
                    .as_ref()
                    .is_some_and(|inner| inner.master.is_some()),
            )
            .finish()
    }
}

impl Keyring {
    /// A keyring on `pool` with `master`, once the database confirms it is the master key
    /// its keys are wrapped with (the first process to start records it).
    pub async fn open(pool: PgPool, master: MasterKey) -> Result<Self, KeyringError> {
        // The first to start records its key's check; a second statement reads whichever
        // was recorded (the insert's snapshot may predate a check committed meanwhile).
        record_master_key_check(&pool, &master.check_value()).await?;
        let check = master_key_check(&pool)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        if !master.checks(&check) {
            return Err(KeyringError::WrongMasterKey);
        }
        Ok(Self::on(pool, Some(master)))
    }

    /// A keyring on `pool` without a master key: it can forget people, but fails with
    /// [`KeyError::NoMasterKey`] wherever personal data must be sealed or opened.
    pub fn without_master_key(pool: PgPool) -> Self {
        Self::on(pool, None)
    }

    /// No keyring at all: for code that never meets personal data (and fails with
    /// [`KeyError::NoMasterKey`] if it does, rather than show it sealed).
    pub fn unavailable() -> Self {
        Self { inner: None }
    }

    fn on(pool: PgPool, master: Option<MasterKey>) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                pool,
                master,
                kept: Cache::new(KEPT_KEYS),
            })),
        }
    }

    /// The pool and master key, for sealing or opening.
    fn inner(&self) -> Result<(&Inner, &MasterKey), KeyError> {
        let inner = self.inner.as_deref().ok_or(KeyError::NoMasterKey)?;
        let master = inner.master.as_ref().ok_or(KeyError::NoMasterKey)?;
        Ok((inner, master))
    }

    /// `subject`'s key, to seal their data with: made now if they have none yet.
    pub async fn key_for_sealing(&self, subject: &str) -> Result<DataKey, KeyError> {
        let (inner, master) = self.inner()?;
        if let Some(key) = inner.kept.get(subject) {
            return Ok(key);
        }
        let (candidate, wrapped) = master.new_data_key(subject);
        let made = sqlx::query(
            "INSERT INTO data_keys (subject, wrapped_key) VALUES ($1, $2) \
             ON CONFLICT (subject) DO NOTHING",
        )
        .bind(subject)
        .bind(wrapped)
        .execute(&inner.pool)
        .await?
        .rows_affected()
            == 1;
        let key = if made {
            candidate
        } else {
            // Another writer made it first (or they were forgotten). Read in a statement of
            // its own: the insert's snapshot predates a key committed while it waited.
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT wrapped_key FROM data_keys WHERE subject = $1")
                    .bind(subject)
                    .fetch_one(&inner.pool)
                    .await?;
            let stored = stored.ok_or_else(|| KeyError::Forgotten(subject.to_owned()))?;
            master.unwrap_data_key(subject, &stored)?
        };
        inner.kept.insert(subject.to_owned(), key.clone());
        Ok(key)
    }

    /// Opens the sealed fields of `events` in place. A forgotten person's fields read as
    /// empty strings, and their event is marked so ([`FORGOTTEN_MARK`]); a person without any
    /// key row fails the whole call.
    pub async fn open_events(&self, events: &mut [StoredEvent]) -> Result<(), KeyError> {
        let mut subjects: Vec<&str> = events
            .iter()
            .flat_map(|event| sealing::subjects(&event.payload))
            .collect();
        if subjects.is_empty() {
            return Ok(());
        }
        subjects.sort_unstable();
        subjects.dedup();
        let keys = self.keys_of(&subjects).await?;
        for event in events.iter_mut() {
            let identity = EventIdentity {
                aggregate_type: &event.aggregate_type,
                aggregate_id: &event.aggregate_id,
                sequence: event.sequence,
            };
            if open_with(&keys, identity, &mut event.payload)? {
                if let Some(metadata) = event.metadata.as_object_mut() {
                    metadata.insert(FORGOTTEN_MARK.to_owned(), "true".into());
                }
            }
        }
        Ok(())
    }

    /// Opens the sealed fields of one `payload`, of the event `identity`, as
    /// [`Keyring::open_events`] does: for events read other than through [`crate::event_log`].
    pub async fn open_payload(
        &self,
        identity: EventIdentity<'_>,
        payload: &mut serde_json::Value,
    ) -> Result<(), KeyError> {
        let subjects: Vec<&str> = sealing::subjects(payload).collect();
        if subjects.is_empty() {
            return Ok(());
        }
        let keys = self.keys_of(&subjects).await?;
        open_with(&keys, identity, payload)?;
        Ok(())
    }

    /// The keys of `subjects` (`None`: forgotten), from memory or in one statement.
    async fn keys_of(
        &self,
        subjects: &[&str],
    ) -> Result<HashMap<String, Option<DataKey>>, KeyError> {
        let (inner, master) = self.inner()?;
        let mut keys = HashMap::with_capacity(subjects.len());
        let mut unknown = Vec::new();
        for subject in subjects {
            match inner.kept.get(*subject) {
                Some(key) => {
                    keys.insert((*subject).to_owned(), Some(key));
                }
                None => unknown.push(*subject),
            }
        }
        if unknown.is_empty() {
            return Ok(keys);
        }
        let rows =
            sqlx::query("SELECT subject, wrapped_key FROM data_keys WHERE subject = ANY($1)")
                .bind(&unknown)
                .fetch_all(&inner.pool)
                .await?;
        for row in rows {
            let subject: String = row.try_get("subject")?;
            let key = match row.try_get::<Option<Vec<u8>>, _>("wrapped_key")? {
                Some(wrapped) => {
                    let key = master.unwrap_data_key(&subject, &wrapped)?;
                    inner.kept.insert(subject.clone(), key.clone());
                    Some(key)
                }
                None => None,
            };
            keys.insert(subject, key);
        }
        if let Some(missing) = unknown.iter().find(|subject| !keys.contains_key(**subject)) {
            return Err(KeyError::Missing((*missing).to_owned()));
        }
        Ok(keys)
    }

    /// Deletes `subject`'s key, leaving the tombstone that says they were forgotten; `true`
    /// if there was a key to delete (forgetting twice is harmless). A subject without any
    /// key yet gets the tombstone too, so that nothing is ever sealed for them again.
    pub async fn forget(&self, subject: &str) -> Result<bool, KeyError> {
        let inner = self.inner.as_deref().ok_or(KeyError::NoMasterKey)?;
        let deleted = forget(&inner.pool, subject).await?;
        inner.kept.remove(subject);
        Ok(deleted)
    }

    /// Drops this process's copy of `subject`'s key (forgotten elsewhere).
    pub fn evict(&self, subject: &str) {
        if let Some(inner) = &self.inner {
            inner.kept.remove(subject);
        }
    }
}

/// Opens `payload`'s sealed fields with `keys`, which hold every subject they name; whether
/// any was a forgotten person's.
fn open_with(
    keys: &HashMap<String, Option<DataKey>>,
    identity: EventIdentity<'_>,
    payload: &mut serde_json::Value,
) -> Result<bool, SealError> {
    sealing::open_fields(payload, identity, |subject| match keys.get(subject) {
        Some(Some(key)) => Ok(Opening::Key(key)),
        Some(None) => Ok(Opening::Forgotten),
        None => Err(SealError::Malformed(format!("the key of {subject:?}"))),
    })
}

/// The statement of [`Keyring::forget`].
async fn forget(executor: impl PgExecutor<'_>, subject: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO data_keys AS k (subject, wrapped_key, forgotten_at) VALUES ($1, NULL, now()) \
         ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, forgotten_at = now() \
         WHERE k.forgotten_at IS NULL \
         RETURNING (xmax <> 0) AS had_key",
    )
    .bind(subject)
    .fetch_optional(executor)
    .await?;
    Ok(row.is_some_and(|row| row.get::<bool, _>("had_key")))
}

/// A row of `data_keys` as stored: what a keys backup holds (wrapped keys are useless
/// without the master key, which no backup holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub subject: String,
    /// `None`: forgotten.
    pub wrapped_key: Option<Vec<u8>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub forgotten_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every key and tombstone, by subject.
pub async fn stored_keys(executor: impl PgExecutor<'_>) -> Result<Vec<StoredKey>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT subject, wrapped_key, created_at, forgotten_at FROM data_keys ORDER BY subject",
    )
    .fetch_all(executor)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(StoredKey {
                subject: row.try_get("subject")?,
                wrapped_key: row.try_get("wrapped_key")?,
                created_at: row.try_get("created_at")?,
                forgotten_at: row.try_get("forgotten_at")?,
            })
        })
        .collect()
}

/// The subjects forgotten so far.
pub async fn forgotten_subjects(executor: impl PgExecutor<'_>) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT subject FROM data_keys WHERE forgotten_at IS NOT NULL")
        .fetch_all(executor)
        .await
}

/// Restores `key` from a backup: a subject without a row gets it; a forgetting, in the
/// backup or here, always wins; a key is never replaced by another. Returns whether the row
/// changed.
pub async fn restore_key(
    executor: impl PgExecutor<'_>,
    key: &StoredKey,
) -> Result<bool, sqlx::Error> {
    let changed = sqlx::query(
        "INSERT INTO data_keys AS k (subject, wrapped_key, created_at, forgotten_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (subject) DO UPDATE SET wrapped_key = NULL, forgotten_at = EXCLUDED.forgotten_at \
         WHERE EXCLUDED.forgotten_at IS NOT NULL AND k.forgotten_at IS NULL",
    )
    .bind(&key.subject)
    .bind(&key.wrapped_key)
    .bind(key.created_at)
    .bind(key.forgotten_at)
    .execute(executor)
    .await?;
    Ok(changed.rows_affected() > 0)
}

/// The master key check value this database holds, if any.
pub async fn master_key_check(
    executor: impl PgExecutor<'_>,
) -> Result<Option<Vec<u8>>, sqlx::Error> {
    sqlx::query_scalar("SELECT sealed FROM master_key_check")
        .fetch_optional(executor)
        .await
}

/// Records `check` as the master key check value, unless the database has one: at the
/// first start, or restoring a keys backup.
pub async fn record_master_key_check(
    executor: impl PgExecutor<'_>,
    check: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO master_key_check (sealed) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(check)
        .execute(executor)
        .await?;
    Ok(())
}

/// Whether `subject` was forgotten (their key deleted).
pub async fn is_forgotten(
    executor: impl PgExecutor<'_>,
    subject: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM data_keys WHERE subject = $1 AND forgotten_at IS NOT NULL)",
    )
    .bind(subject)
    .fetch_one(executor)
    .await
}
