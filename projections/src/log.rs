//! Positions in the global event log and the rows read from it.

use chrono::{DateTime, Utc};
use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;

/// A place in the log, in the order catch-up readers consume it.
///
/// Ordered by transaction first: a reader only sees transactions older than every one still
/// running, so everything behind a position is final. `global_position` alone is not a safe
/// checkpoint, because a transaction can take a position and commit after a later one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The writing transaction's `xid8`, as a number.
    pub transaction_id: i64,
    /// The event's `global_position`.
    pub global_position: i64,
}

impl LogPosition {
    /// Parses the `tx:position` form used in notifications.
    pub fn parse(tx_and_position: &str) -> Option<Self> {
        let (tx, position) = tx_and_position.split_once(':')?;
        Some(Self {
            transaction_id: tx.parse().ok()?,
            global_position: position.parse().ok()?,
        })
    }
}

/// The columns of `events` in the order [`StoredEvent::from_row`] reads them. Its
/// `transaction_id` is a bigint alias: order by `events.transaction_id`, which the index has.
pub const EVENT_COLUMNS: &str = "global_position, transaction_id::text::bigint AS transaction_id, \
     aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at";

/// One row of the event log, as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: LogPosition,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
    pub recorded_at: DateTime<Utc>,
}

impl StoredEvent {
    /// Reads a row selected with [`EVENT_COLUMNS`].
    pub fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: LogPosition {
                transaction_id: row.try_get("transaction_id")?,
                global_position: row.try_get("global_position")?,
            },
            aggregate_type: row.try_get("aggregate_type")?,
            aggregate_id: row.try_get("aggregate_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            event_version: row.try_get("event_version")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }

    /// Upcasts the payload to the current version and deserialises it as `A`'s event.
    pub fn decode<A: Aggregate>(
        &self,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<EventEnvelope<A>> {
        let serialized = SerializedEvent::new(
            self.aggregate_id.clone(),
            usize::try_from(self.sequence)?,
            self.aggregate_type.clone(),
            self.event_type.clone(),
            self.event_version.clone(),
            self.payload.clone(),
            self.metadata.clone(),
        );
        let upcast = domain::upcasting::upcast(serialized, upcasters);
        EventEnvelope::try_from(upcast).map_err(|err| {
            anyhow::anyhow!(
                "cannot decode {} v{} at position {}: {err}",
                self.event_type,
                self.event_version,
                self.position.global_position
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_transaction_before_position() {
        let early_tx_late_position = LogPosition {
            transaction_id: 10,
            global_position: 7,
        };
        let late_tx_early_position = LogPosition {
            transaction_id: 11,
            global_position: 6,
        };
        assert!(early_tx_late_position < late_tx_early_position);
    }

    #[test]
    fn notification_form_parses() {
        assert_eq!(
            LogPosition::parse("812:45"),
            Some(LogPosition {
                transaction_id: 812,
                global_position: 45
            })
        );
        assert_eq!(LogPosition::parse("812"), None);
        assert_eq!(LogPosition::parse("x:1"), None);
    }
}
