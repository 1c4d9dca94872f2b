//! `backup`: exports of the log (see [`crate::export`]) into a folder, under names that sort by
//! time, keeping the newest few, each recorded in the `backups` table once it is complete (the
//! servers export the newest one's time as a metric, which an alert watches). Once, or every
//! so often until stopped: compose's `backup` service runs it that way.
//!
//! Each backup is two files: the export of the log, and beside it the data keys (see
//! [`crate::keys`]: wrapped, with the tombstones of everyone forgotten). Every run also scrubs
//! the keys files it keeps of people forgotten since they were written, so a forgotten
//! person's key is gone from the backups one interval after the forgetting.
//!
//! Why exports rather than PostgreSQL base backups with WAL archiving: the log is the whole
//! truth and everything else is derived from it, so an export restores everything a service
//! needs (with `latest`), into any PostgreSQL version, checked line by line on the way in;
//! and taking one holds nothing back (a read-only snapshot). What it gives up is
//! point-in-time recovery: a restore goes back to the last backup, so the interval is the
//! most that can be lost.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use database::keyring;

use crate::export::{export_to, ExportSummary};
use crate::keys::{export_keys, scrub, KeysSummary};

/// What every backup file's name starts and ends with; the time of the backup goes between,
/// so that names sort by time. Only files named so are ever pruned.
const PREFIX: &str = "minitwit-";
const SUFFIX: &str = ".jsonl";
/// What a keys file's name ends with instead, beside its export's.
const KEYS_SUFFIX: &str = ".keys.jsonl";

/// Where backups go and how many are kept.
#[derive(Debug, Clone)]
pub struct BackupPlan {
    pub folder: PathBuf,
    /// The newest this many backup files are kept; older ones are deleted.
    pub keep: usize,
}

/// One finished backup, and what was pruned after it.
#[derive(Debug)]
pub struct BackupReport {
    pub export: ExportSummary,
    pub keys: KeysSummary,
    /// Older keys files from which forgotten people's keys were removed.
    pub scrubbed: Vec<PathBuf>,
    pub pruned: Vec<PathBuf>,
}

impl fmt::Display for BackupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "backup: {}; the keys: {}", self.export, self.keys)?;
        for file in &self.scrubbed {
            write!(
                f,
                "\nbackup: removed forgotten people's keys from {}",
                file.display()
            )?;
        }
        for file in &self.pruned {
            write!(f, "\nbackup: deleted the older {}", file.display())?;
        }
        Ok(())
    }
}

/// Takes one backup into `plan.folder`, records it, then deletes the backups past
/// `plan.keep`.
pub async fn backup_once(pool: &PgPool, plan: &BackupPlan) -> anyhow::Result<BackupReport> {
    std::fs::create_dir_all(&plan.folder)
        .with_context(|| format!("creating {}", plan.folder.display()))?;
    // Milliseconds: two backups in one second must not overwrite each other.
    let time = Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let name = format!("{PREFIX}{time}{SUFFIX}");
    let path = plan.folder.join(&name);
    let export = export_to(pool, &path).await?;
    // The keys after the log: a key made in between seals nothing the export holds, and a
    // person forgotten in between is a tombstone here.
    let keys = export_keys(
        pool,
        &plan.folder.join(format!("{PREFIX}{time}{KEYS_SUFFIX}")),
    )
    .await?;
    // The rename that completed the file reaches the disk before the file counts as a backup.
    std::fs::File::open(&plan.folder)
        .and_then(|folder| folder.sync_all())
        .with_context(|| format!("syncing {}", plan.folder.display()))?;
    sqlx::query("INSERT INTO backups (file, events, head) VALUES ($1, $2, $3)")
        .bind(&name)
        .bind(export.events.count as i64)
        .bind(export.events.positions.map(|(_, highest)| highest))
        .execute(pool)
        .await
        .context("recording the backup")?;
    let scrubbed = scrub_forgotten(pool, &plan.folder).await?;
    let pruned = prune(pool, plan).await?;
    Ok(BackupReport {
        export,
        keys,
        scrubbed,
        pruned,
    })
}

/// Removes the keys of everyone forgotten from every keys file in `folder`; the files changed.
async fn scrub_forgotten(pool: &PgPool, folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let forgotten: HashSet<String> = keyring::forgotten_subjects(pool)
        .await?
        .into_iter()
        .collect();
    let mut scrubbed = Vec::new();
    if forgotten.is_empty() {
        return Ok(scrubbed);
    }
    for name in backup_names(folder)? {
        let keys = folder.join(keys_name(&name));
        if keys.exists() && scrub(&keys, &forgotten)? {
            scrubbed.push(keys);
        }
    }
    Ok(scrubbed)
}

/// The name of the keys file beside the export `name`.
fn keys_name(name: &str) -> String {
    format!("{}{KEYS_SUFFIX}", name.trim_end_matches(SUFFIX))
}

/// Deletes the backup files past the newest `plan.keep`, and their rows.
async fn prune(pool: &PgPool, plan: &BackupPlan) -> anyhow::Result<Vec<PathBuf>> {
    let mut names = backup_names(&plan.folder)?;
    names.sort_unstable_by(|a, b| b.cmp(a));
    let mut pruned = Vec::new();
    for name in names.into_iter().skip(plan.keep) {
        let keys = plan.folder.join(keys_name(&name));
        if keys.exists() {
            std::fs::remove_file(&keys).with_context(|| format!("deleting {}", keys.display()))?;
        }
        let path = plan.folder.join(&name);
        std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        sqlx::query("DELETE FROM backups WHERE file = $1")
            .bind(&name)
            .execute(pool)
            .await?;
        pruned.push(path);
    }
    Ok(pruned)
}

/// The names of the backup files in `folder` (not of anything else, nor of a partial one).
fn backup_names(folder: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in
        std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?
    {
        let name = entry?.file_name();
        if let Some(name) = name.to_str().filter(|name| is_backup_name(name)) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

fn is_backup_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
        .is_some_and(|time| {
            chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%S%.3fZ").is_ok()
        })
}

/// Takes a backup every `interval`, the first at once, until `cancel` fires. A failed backup
/// is reported and the next one is tried at its time: the alert on the newest backup's age
/// tells when they keep failing.
pub async fn backup_every(
    pool: &PgPool,
    plan: &BackupPlan,
    interval: Duration,
    cancel: &CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match backup_once(pool, plan).await {
            Ok(report) => println!("{report}"),
            Err(err) => eprintln!("backup: failed: {err:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_file_is_named_after_its_export() {
        assert_eq!(
            keys_name("minitwit-20261204T150102.123Z.jsonl"),
            "minitwit-20261204T150102.123Z.keys.jsonl"
        );
    }

    #[test]
    fn only_backup_files_count_as_backups() {
        assert!(is_backup_name("minitwit-20261204T150102.123Z.jsonl"));
        for other in [
            "minitwit-20261204T150102.123Z.jsonl.partial",
            "minitwit-latest.jsonl",
            "notes.jsonl",
            "minitwit-20261204T150102.123Z.json",
            "minitwit-20261204T150102.123Z.keys.jsonl",
        ] {
            assert!(!is_backup_name(other), "{other}");
        }
    }
}
