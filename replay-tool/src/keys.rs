//! Backups of the data keys (`export-keys`, `import-keys`, and `backup`'s keys files), kept
//! apart from the event exports on purpose.
//!
//! An event export holds personal fields only sealed, and no key: restored on its own, it
//! brings nobody's personal data back — a forgotten person's least of all. Restoring a
//! service needs the keys too, so every backup writes a keys file beside its export: the
//! wrapped keys (useless without the master key, which no backup holds) and the tombstones
//! of everyone forgotten. Each run of `backup` also scrubs every keys file it keeps of the
//! keys of people forgotten since the file was written, so a forgotten person's key leaves
//! the backups within one backup interval. Importing keys never revives anyone: a tombstone,
//! in the file or in the database, wins over a key.
//!
//! File format: JSON lines. The first holds the master key check value
//! (`{"master_key_check": BASE64}`), each further one a key or tombstone
//! (`{"subject", "wrapped_key": BASE64 | null, "created_at", "forgotten_at": TIME | null}`).

use std::collections::HashSet;
use std::fmt;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use database::keyring::{self, StoredKey};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::export::owner_only_file;

#[derive(Serialize, Deserialize)]
struct CheckLine {
    master_key_check: String,
}

#[derive(Serialize, Deserialize)]
struct KeyLine {
    subject: String,
    wrapped_key: Option<String>,
    created_at: DateTime<Utc>,
    forgotten_at: Option<DateTime<Utc>>,
}

impl KeyLine {
    fn of(key: &StoredKey) -> Self {
        Self {
            subject: key.subject.clone(),
            wrapped_key: key.wrapped_key.as_deref().map(|key| STANDARD.encode(key)),
            created_at: key.created_at,
            forgotten_at: key.forgotten_at,
        }
    }

    fn stored(self) -> anyhow::Result<StoredKey> {
        let wrapped_key = self
            .wrapped_key
            .map(|key| STANDARD.decode(key))
            .transpose()
            .with_context(|| format!("the key of {:?} is not base64", self.subject))?;
        anyhow::ensure!(
            wrapped_key.is_none() == self.forgotten_at.is_some(),
            "the key of {:?} must have either a key or a forgetting",
            self.subject
        );
        Ok(StoredKey {
            subject: self.subject,
            wrapped_key,
            created_at: self.created_at,
            forgotten_at: self.forgotten_at,
        })
    }
}

/// What a keys file holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeysSummary {
    pub keys: u64,
    pub forgotten: u64,
}

impl fmt::Display for KeysSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} keys, {} forgotten people", self.keys, self.forgotten)
    }
}

/// Writes every key and tombstone to `file` (readable by its owner only), completely or not
/// at all.
pub async fn export_keys(pool: &PgPool, file: &Path) -> anyhow::Result<KeysSummary> {
    let check = keyring::master_key_check(pool)
        .await?
        .context("the database has no master key check: no key was ever made")?;
    let keys = keyring::stored_keys(pool).await?;
    write_keys_file(file, &check, keys.iter().map(KeyLine::of))
}

/// Restores the keys and tombstones of `file` (see the module's doc: forgettings win).
pub async fn import_keys(pool: &PgPool, file: &Path) -> anyhow::Result<KeysSummary> {
    let (check, lines) = read_keys_file(file)?;
    let mut tx = pool.begin().await?;
    if let Some(held) = keyring::master_key_check(&mut *tx).await? {
        if held != check {
            tracing::info!(
                "the database has its own master key check; a master key that opens only \
                 one of them is refused when a server starts"
            );
        }
    } else {
        keyring::record_master_key_check(&mut *tx, &check).await?;
    }
    let mut summary = KeysSummary::default();
    for line in lines {
        let key = line.stored()?;
        if key.wrapped_key.is_some() {
            summary.keys += 1;
        } else {
            summary.forgotten += 1;
        }
        keyring::restore_key(&mut *tx, &key).await?;
    }
    tx.commit().await?;
    Ok(summary)
}

/// Rewrites `file` with a tombstone in place of the key of everyone in `forgotten`; whether
/// it changed.
pub fn scrub(file: &Path, forgotten: &HashSet<String>) -> anyhow::Result<bool> {
    let (check, lines) = read_keys_file(file)?;
    let mut changed = false;
    let lines: Vec<KeyLine> = lines
        .into_iter()
        .map(|mut line| {
            if line.wrapped_key.is_some() && forgotten.contains(&line.subject) {
                line.wrapped_key = None;
                line.forgotten_at = Some(Utc::now());
                changed = true;
            }
            line
        })
        .collect();
    if changed {
        write_keys_file(file, &check, lines.into_iter())?;
    }
    Ok(changed)
}

/// Writes a keys file as `FILE.partial`, synced, then renamed into place.
fn write_keys_file(
    file: &Path,
    check: &[u8],
    lines: impl Iterator<Item = KeyLine>,
) -> anyhow::Result<KeysSummary> {
    let mut partial = file.as_os_str().to_owned();
    partial.push(".partial");
    let partial = std::path::PathBuf::from(partial);
    let written = (|| {
        let mut out = std::io::BufWriter::new(owner_only_file(&partial)?);
        let mut summary = KeysSummary::default();
        let check = CheckLine {
            master_key_check: STANDARD.encode(check),
        };
        writeln!(out, "{}", serde_json::to_string(&check)?)?;
        for line in lines {
            if line.wrapped_key.is_some() {
                summary.keys += 1;
            } else {
                summary.forgotten += 1;
            }
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
        out.into_inner()
            .map_err(|err| err.into_error())?
            .sync_all()?;
        std::fs::rename(&partial, file)?;
        anyhow::Ok(summary)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written.with_context(|| format!("writing the keys file {}", file.display()))
}

/// The check value and the key lines of a keys file.
fn read_keys_file(file: &Path) -> anyhow::Result<(Vec<u8>, Vec<KeyLine>)> {
    let opened =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut lines = BufReader::new(opened).lines();
    let first = lines
        .next()
        .transpose()?
        .with_context(|| format!("{} is empty", file.display()))?;
    let check: CheckLine = serde_json::from_str(&first)
        .with_context(|| format!("{} does not start with a master key check", file.display()))?;
    let check = STANDARD
        .decode(check.master_key_check)
        .context("the master key check is not base64")?;
    let keys = lines
        .enumerate()
        .map(|(index, line)| {
            let line = line?;
            serde_json::from_str(&line)
                .with_context(|| format!("line {} of {} is not a key", index + 2, file.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((check, keys))
}
