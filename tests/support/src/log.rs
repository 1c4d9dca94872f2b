//! The event log as the tests read it: payloads with their sealed personal fields opened by
//! the test master key, as the servers' projectors see them.

use database::keyring::Keyring;
use database::sealing::{EventIdentity, MasterKey};
use serde_json::Value;
use sqlx::{PgPool, Row as _};

use crate::database::TEST_MASTER_KEY;

/// An event of the log, opened.
#[derive(Debug, Clone)]
pub struct OpenedEvent {
    pub aggregate_id: String,
    pub sequence: i64,
    /// The event's fields (inside its type's name), opened.
    pub fields: Value,
}

/// Every event of `event_type` in the log, in log order, opened.
pub async fn opened_events(pool: &PgPool, event_type: &str) -> Vec<OpenedEvent> {
    let master = MasterKey::from_base64(TEST_MASTER_KEY).expect("the test master key");
    let keys = Keyring::open(pool.clone(), master)
        .await
        .expect("opening the data keys");
    let rows = sqlx::query(
        "SELECT aggregate_type, aggregate_id, sequence, payload FROM events \
         WHERE event_type = $1 ORDER BY transaction_id, global_position",
    )
    .bind(event_type)
    .fetch_all(pool)
    .await
    .expect("reading the log");
    let mut opened = Vec::with_capacity(rows.len());
    for row in rows {
        let aggregate_type: String = row.get("aggregate_type");
        let aggregate_id: String = row.get("aggregate_id");
        let sequence: i64 = row.get("sequence");
        let mut payload: Value = row.get("payload");
        let identity = EventIdentity {
            aggregate_type: &aggregate_type,
            aggregate_id: &aggregate_id,
            sequence,
        };
        keys.open_payload(identity, &mut payload)
            .await
            .expect("opening an event");
        opened.push(OpenedEvent {
            fields: payload[event_type].clone(),
            aggregate_id,
            sequence,
        });
    }
    opened
}
