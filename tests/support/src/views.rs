//! The event log and the views projected from it, seen from below the API: appending events
//! straight into the log, reading a projection's checkpoint, waiting for the projectors to
//! catch up, comparing the views with a rebuild, and projections that misbehave on purpose.

use std::sync::Arc;
use std::time::Duration;

use crate::database::TEST_MASTER_KEY;
use cqrs_es::persist::EventUpcaster;
use database::keyring::Keyring;
use database::sealing::MasterKey;
use projections::{Projection, ProjectorSettings, StoredEvent, ViewChange};
use sqlx::PgPool;

/// Appends a `MessagePosted` event for `author` straight into the log on `conn`, bypassing
/// the command side — for tests that need control over transactions and volume.
pub async fn append_message_event(
    conn: &mut sqlx::PgConnection,
    message_id: &str,
    author: &str,
    content: &str,
) -> i64 {
    let payload = serde_json::to_value(domain::MessageEvent::MessagePosted {
        author: author.to_owned(),
        content: content.to_owned(),
        posted_at: chrono::Utc::now(),
    })
    .expect("serialising an event");
    sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) \
         VALUES ('message', $1, 1, 'MessagePosted', '1.0', $2, '{}') RETURNING global_position",
    )
    .bind(message_id)
    .bind(payload)
    .fetch_one(conn)
    .await
    .expect("appending an event")
}

/// The timeline projection's checkpoint position.
pub async fn timeline_checkpoint(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT last_position FROM projection_checkpoints WHERE projection = 'timeline' AND version = 1",
    )
    .fetch_one(pool)
    .await
    .expect("reading the timeline checkpoint")
}

/// Waits until every active projection has applied every event in the log; panics if one
/// has not within `timeout`.
pub async fn await_projections_at_head(pool: &PgPool, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let projections = projections::all();
    loop {
        let mut behind = Vec::new();
        let versions = projections::maintenance::versions(pool)
            .await
            .expect("reading the projection versions");
        for version in versions.iter().filter(|version| version.state == "active") {
            let projection = projections
                .iter()
                .find(|projection| projection.name() == version.projection)
                .expect("an active version of a known projection");
            let lag = projections::maintenance::lag(pool, projection.as_ref(), version.checkpoint)
                .await
                .expect("reading a projection's lag");
            if lag.events > 0 {
                behind.push((version.projection.clone(), lag.events));
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "projections still behind the log after {timeout:?}: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every row of every table of the view schema `schema`, as sorted JSON texts, by table.
pub async fn schema_rows(pool: &PgPool, schema: &str) -> Vec<(String, Vec<String>)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .expect("listing view tables");
    let mut rows = Vec::with_capacity(tables.len());
    for table in tables {
        let table_rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT row_to_json(t)::text FROM {schema}.{table} AS t ORDER BY 1"
        ))
        .fetch_all(pool)
        .await
        .expect("reading a view");
        rows.push((table, table_rows));
    }
    rows
}

/// Rebuilds every projection from position zero into a scratch version and asserts that it
/// equals the active version at the same log position, row for row — the admin tool's
/// `verify`, whose own tests show it catches a differing view.
pub async fn assert_views_equal_a_rebuild(pool: &PgPool) {
    let master = MasterKey::from_base64(TEST_MASTER_KEY).expect("the test master key");
    let keys = Keyring::open(pool.clone(), master)
        .await
        .expect("opening the data keys");
    for projection in projections::all() {
        let settings = ProjectorSettings {
            keys: keys.clone(),
            ..ProjectorSettings::default()
        };
        let comparison = projections::maintenance::verify(pool, &projection, settings)
            .await
            .expect("rebuilding and comparing the views");
        assert!(
            comparison.is_equal(),
            "{} differs from a rebuild: {:#?}",
            projection.name(),
            comparison.tables
        );
    }
}

/// How an [`Altered`] projection plans a batch, given the real projection.
pub trait BatchApplier: Send + Sync {
    fn plan(
        &self,
        real: &dyn Projection,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>>;
}

/// A projection that is `real` in everything but how it applies batches, which `applier`
/// decides: for tests of what the projectors make of a projection that misbehaves.
pub struct Altered<A> {
    pub real: Arc<dyn Projection>,
    pub applier: A,
}

impl<A: BatchApplier> Projection for Altered<A> {
    fn name(&self) -> &'static str {
        self.real.name()
    }

    fn version(&self) -> i32 {
        self.real.version()
    }

    fn aggregate_type(&self) -> &'static str {
        self.real.aggregate_type()
    }

    fn create_tables_sql(&self, schema: &str) -> String {
        self.real.create_tables_sql(schema)
    }

    fn create_indexes_sql(&self, schema: &str) -> String {
        self.real.create_indexes_sql(schema)
    }

    fn plan_batch(
        &self,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>> {
        self.applier
            .plan(self.real.as_ref(), schema, events, upcasters)
    }
}
