//! What a projection is, apart from the machinery that runs it: the [`Projection`] trait each
//! view implements, the schema and lock names of its versions, and the states a version goes
//! through.
//!
//! A leaf: the projector, the progress tracker and the maintenance of versions all speak of
//! projections, and none of them needs the others to do so.

use async_trait::async_trait;
use cqrs_es::persist::EventUpcaster;
use database::event_log::StoredEvent;
use sqlx::PgConnection;

/// A view built from the log.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: part of checkpoint keys, lock keys and schema names. A plain identifier.
    fn name(&self) -> &'static str;
    /// The version the code builds and reads. Bump it when the tables' shape or meaning
    /// changes; the new version is then built beside the old one.
    fn version(&self) -> i32;
    /// The aggregate type whose events this projection reads; others are not fetched. One
    /// type, so that a projector reads its own stretch of the `(aggregate_type,
    /// transaction_id, global_position)` index in log order and never steps over the other
    /// types' events (a million messages between two registrations, for the accounts).
    fn aggregate_type(&self) -> &'static str;
    /// Idempotent DDL creating this projection's tables inside `schema` (which exists), with
    /// the keys its batches write through.
    fn create_tables_sql(&self, schema: &str) -> String;
    /// Idempotent DDL creating the indexes the reads use. Apart from the tables because a
    /// version built from the start of the log gets them once, when it is complete (see
    /// [`Projector::create_indexes`]): building an index over a million rows costs a
    /// fraction of keeping it up row by row.
    ///
    /// [`Projector::create_indexes`]: crate::projector::Projector::create_indexes
    fn create_indexes_sql(&self, schema: &str) -> String;
    /// Applies a batch of events, given in log order, to the tables in `schema`, with a
    /// constant number of set-based statements: a rebuild's cost is then its batches, not
    /// its events. The result must equal applying the events one at a time, in order, and
    /// be idempotent: applying a batch twice leaves the tables as applying it once.
    async fn apply_batch(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<()>;
}

/// The schema holding `projection`'s tables at `version`.
pub fn schema_name(projection: &str, version: i32) -> String {
    format!("{projection}_v{version}")
}

/// The text whose hash keys the advisory lock of the projection version in `schema`: every
/// batch takes it, and so does anything that must see that version hold still.
pub fn lock_name(schema: &str) -> String {
    format!("projection:{schema}")
}

/// What a version is for (the `state` column of `projection_checkpoints`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Being built from the start of the log; becomes active when caught up.
    Building,
    /// Served and kept up by the servers.
    Active,
    /// Replaced by a newer version; nobody keeps it up.
    Retired,
    /// Built only to be compared with the active version, then dropped.
    Scratch,
}

impl VersionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Active => "active",
            Self::Retired => "retired",
            Self::Scratch => "scratch",
        }
    }
}
