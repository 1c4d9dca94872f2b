//! What a projection is, apart from the machinery that runs it: the [`Projection`] trait each
//! view implements, the schema and lock names of its versions, and the states a version goes
//! through.
//!
//! A leaf: the projector, the progress tracker and the maintenance of versions all speak of
//! projections, and none of them needs the others to do so.

use cqrs_es::persist::EventUpcaster;
use database::event_log::StoredEvent;
use sqlx::error::BoxDynError;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments as _, Encode, Postgres, Type};

/// A view built from the log.
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
    /// What a batch of events, given in log order, does to the tables in `schema`: a
    /// constant number of set-based statements, run in order (a rebuild's cost is then its
    /// batches, not its events). Running them must equal applying the events one at a time,
    /// in order, and be idempotent: running a batch's statements twice leaves the tables as
    /// running them once.
    ///
    /// Planning does no I/O: the projector runs the statements, and a batch whose changes
    /// are one statement commits with its checkpoint's move in that statement (see
    /// [`ViewChange`]).
    fn plan_batch(
        &self,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>>;
}

/// The condition every [`ViewChange`] puts on the rows it writes. Run on its own, inside the
/// transaction of a batch whose claim moved the checkpoint, it is plain `true`; run together
/// with the checkpoint's move, in one statement, the projector replaces it with the
/// condition that the move succeeded, so that a batch another worker applied first, or
/// whose lock another worker holds, writes nothing.
pub const CLAIM_HELD: &str = "/* claim held */ true";

/// One set-based statement of a batch's effect on a view, with its arguments.
///
/// The statement must be able to run as a common table expression of a larger one: it may
/// have a `WITH` of its own, but no data-modifying statement in it. Every row it writes is
/// under [`CLAIM_HELD`].
pub struct ViewChange {
    sql: String,
    /// The arguments, or the first that could not be encoded (reported when the change runs,
    /// the way sqlx's own queries do).
    arguments: Result<PgArguments, BoxDynError>,
}

impl ViewChange {
    /// A change running `sql`, whose parameters are bound in order by [`ViewChange::bind`].
    ///
    /// # Panics
    /// If `sql` does not put its rows under [`CLAIM_HELD`]: a projection bug that would let
    /// a batch another worker applied be applied again over the newer events after it.
    pub fn new(sql: String) -> Self {
        assert!(
            sql.contains(CLAIM_HELD),
            "a view change must put its rows under CLAIM_HELD: {sql}"
        );
        Self {
            sql,
            arguments: Ok(PgArguments::default()),
        }
    }

    /// Binds the next parameter.
    pub fn bind<'q, T>(mut self, value: T) -> Self
    where
        T: 'q + Encode<'q, Postgres> + Type<Postgres>,
    {
        if let Ok(arguments) = &mut self.arguments {
            if let Err(err) = arguments.add(value) {
                self.arguments = Err(err);
            }
        }
        self
    }

    /// The statement, with [`CLAIM_HELD`] in it.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The statement and its arguments, to run.
    pub fn into_parts(self) -> (String, Result<PgArguments, BoxDynError>) {
        (self.sql, self.arguments)
    }
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
