//! Timeline reads answered again without running them again, while the views under them
//! stand still: a per-replica cache of timeline results keyed by the checkpoints of the
//! views they read.
//!
//! Only the newest page of each timeline is kept — what `/public`, `/<user>`, `/` and
//! `GET /msgs` show; older pages and live catch-ups (read from ever-different cursors) are
//! read as they come.
//!
//! A timeline reads the timeline view (the messages) and the accounts view (authors'
//! emails, and for "my" timeline the follows). Views and checkpoints commit together, so
//! while both checkpoints (and the versions read) are where they were when a result was
//! read, the views hold the same rows and the result is still the answer. A read therefore
//! first asks the database where the two checkpoints stand — one primary-key probe, much
//! cheaper than the timeline, and shared by the reads that wait at once
//! ([`crate::view_marks`]) — and reuses the result read at those very checkpoints, if it
//! has one.
//!
//! Asking the database, not this replica's own idea of the checkpoints, is what keeps read
//! your writes across replicas: a write acknowledged by another replica has moved the
//! checkpoints in the database before it was acknowledged, so the probe sees the move and
//! the stale result is not used, whether or not this replica has heard of the move yet.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::timelines::{TimelineEntry, TimelineScope};
use crate::view_marks::ViewMarks;

/// How many timeline entries the cache holds in all (a page is 31 of them).
const CACHED_ENTRIES: u64 = 50_000;

/// A read of a timeline's newest entries, as the cache knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ReadKey {
    scope: OwnedScope,
    limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OwnedScope {
    Public,
    Author(String),
    Personal(String),
}

impl From<TimelineScope<'_>> for OwnedScope {
    fn from(scope: TimelineScope<'_>) -> Self {
        match scope {
            TimelineScope::Public => Self::Public,
            TimelineScope::Author(author) => Self::Author(author.to_owned()),
            TimelineScope::Personal(user) => Self::Personal(user.to_owned()),
        }
    }
}

/// A result and the marks it was read at.
#[derive(Clone)]
struct CachedRead {
    marks: ViewMarks,
    entries: Arc<[TimelineEntry]>,
}

#[derive(Clone)]
struct ByEntries;

impl Weighter<ReadKey, CachedRead> for ByEntries {
    fn weight(&self, _key: &ReadKey, read: &CachedRead) -> u64 {
        read.entries.len().max(1) as u64
    }
}

/// The cache of one replica's timeline reads.
#[derive(Clone)]
pub struct TimelineCache {
    reads: Arc<Cache<ReadKey, CachedRead, ByEntries>>,
}

impl Default for TimelineCache {
    fn default() -> Self {
        Self {
            reads: Arc::new(Cache::with_weighter(
                (CACHED_ENTRIES / 30) as usize,
                CACHED_ENTRIES,
                ByEntries,
            )),
        }
    }
}

impl TimelineCache {
    /// The newest `limit` entries of `scope`, if they were read at exactly `marks`.
    pub fn get(
        &self,
        scope: TimelineScope<'_>,
        limit: i64,
        marks: ViewMarks,
    ) -> Option<Vec<TimelineEntry>> {
        let key = ReadKey {
            scope: scope.into(),
            limit,
        };
        let cached = self.reads.get(&key).filter(|read| read.marks == marks);
        metrics::counter!(
            "minitwit_timeline_cache_lookups_total",
            "outcome" => if cached.is_some() { "hit" } else { "miss" }
        )
        .increment(1);
        cached.map(|read| read.entries.to_vec())
    }

    /// Keeps the newest `limit` entries of `scope`, read when the views stood at `marks`
    /// (or later: a batch may commit between the probe and the read, and then the next
    /// probe differs from `marks` anyway).
    pub fn put(
        &self,
        scope: TimelineScope<'_>,
        limit: i64,
        marks: ViewMarks,
        entries: &[TimelineEntry],
    ) {
        let key = ReadKey {
            scope: scope.into(),
            limit,
        };
        self.reads.insert(
            key,
            CachedRead {
                marks,
                entries: entries.into(),
            },
        );
    }
}
