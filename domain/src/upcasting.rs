//! How stored events of older versions are read as the current version.
//!
//! Stored rows are never rewritten: every reader of the log (the command side loading an
//! aggregate, and every projector) passes each row through [`upcasters`] before
//! deserialising it. When a payload changes, bump the event's version in its aggregate module
//! and register here an upcaster from the previous version.
//!
//! The history so far:
//! - `MessageFlagged` and `MessageUnflagged` 1.0 → 2.0: 2.0 records who took the decision and
//!   why (`moderation`). A 1.0 decision gets an empty `moderation`: not recorded.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use serde_json::{json, Value};

use crate::message::MessageEvent;

/// Every upcaster, oldest first.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    vec![Box::new(ModerationRecorded)]
}

/// Runs `event` through every upcaster that accepts it, in order.
///
/// cqrs-es does this itself when loading aggregates, but its helper is private, and the
/// projectors read rows outside cqrs-es.
pub fn upcast(mut event: SerializedEvent, upcasters: &[Box<dyn EventUpcaster>]) -> SerializedEvent {
    for upcaster in upcasters {
        if upcaster.can_upcast(&event.event_type, &event.event_version) {
            event = upcaster.upcast(event);
        }
    }
    event
}

/// Moderation events 1.0 → 2.0: adds an empty (unrecorded) `moderation`.
struct ModerationRecorded;

impl EventUpcaster for ModerationRecorded {
    fn can_upcast(&self, event_type: &str, event_version: &str) -> bool {
        matches!(event_type, "MessageFlagged" | "MessageUnflagged") && event_version == "1.0"
    }

    fn upcast(&self, mut event: SerializedEvent) -> SerializedEvent {
        // The payload is `{"<event type>": {...fields}}`, serde's external tagging.
        if let Some(Value::Object(fields)) = event.payload.get_mut(&event.event_type) {
            fields
                .entry("moderation")
                .or_insert_with(|| json!({"moderator": "", "reason": ""}));
        }
        event.event_version = MessageEvent::MODERATION_VERSION.to_owned();
        event
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use cqrs_es::EventEnvelope;
    use proptest::prelude::*;

    use super::*;
    use crate::message::{Message, Moderation};
    use crate::testing::{self, failure};

    fn stored(event_type: &str, version: &str, payload: Value) -> SerializedEvent {
        SerializedEvent::new(
            "message-1".into(),
            2,
            "message".into(),
            event_type.into(),
            version.into(),
            payload,
            json!({}),
        )
    }

    #[test]
    fn a_version_one_flag_is_read_as_the_current_version() {
        let v1 = stored(
            "MessageFlagged",
            "1.0",
            json!({"MessageFlagged": {"flagged_at": "2026-11-25T12:00:00Z"}}),
        );
        let current = upcast(v1, &upcasters());
        assert_eq!(current.event_version, "2.0");
        let envelope = EventEnvelope::<Message>::try_from(current).unwrap();
        assert_eq!(
            envelope.payload,
            MessageEvent::MessageFlagged {
                flagged_at: Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap(),
                moderation: Moderation::default(),
            }
        );
    }

    #[test]
    fn a_version_one_unflag_is_read_as_the_current_version() {
        let v1 = stored(
            "MessageUnflagged",
            "1.0",
            json!({"MessageUnflagged": {"unflagged_at": "2026-11-25T12:00:00Z"}}),
        );
        let envelope = EventEnvelope::<Message>::try_from(upcast(v1, &upcasters())).unwrap();
        assert!(matches!(
            envelope.payload,
            MessageEvent::MessageUnflagged { moderation, .. } if moderation == Moderation::default()
        ));
    }

    #[test]
    fn current_versions_and_other_events_pass_unchanged() {
        let v2 = stored(
            "MessageFlagged",
            "2.0",
            json!({"MessageFlagged": {"flagged_at": "2026-11-25T12:00:00Z",
                   "moderation": {"moderator": "admin", "reason": "spam"}}}),
        );
        assert_eq!(upcast(v2.clone(), &upcasters()).payload, v2.payload);
        let posted = stored(
            "MessagePosted",
            "1.0",
            json!({"MessagePosted": {"author": "a", "content": "x", "posted_at": "2026-11-25T12:00:00Z"}}),
        );
        let after = upcast(posted.clone(), &upcasters());
        assert_eq!(after.payload, posted.payload);
        assert_eq!(after.event_version, "1.0");
    }

    #[test]
    fn without_the_upcaster_a_version_one_flag_would_not_be_readable() {
        let v1 = stored(
            "MessageFlagged",
            "1.0",
            json!({"MessageFlagged": {"flagged_at": "2026-11-25T12:00:00Z"}}),
        );
        assert!(EventEnvelope::<Message>::try_from(v1).is_err());
    }

    proptest! {
        /// Whatever a stored 1.0 flag or unflag holds — any instant, any stream, any
        /// metadata — it is read as the 2.0 event with an unrecorded moderation.
        #[test]
        fn every_version_one_moderation_event_is_read_as_version_two(
            flagged in any::<bool>(),
            at in testing::instant(),
            aggregate_id in testing::hostile_text(),
            sequence in any::<usize>(),
            request_id in testing::hostile_text(),
        ) {
            let (event_type, at_field) = if flagged {
                ("MessageFlagged", "flagged_at")
            } else {
                ("MessageUnflagged", "unflagged_at")
            };
            let metadata = json!({ "request_id": request_id });
            let v1 = SerializedEvent::new(
                aggregate_id.clone(),
                sequence,
                "message".into(),
                event_type.into(),
                "1.0".into(),
                json!({ event_type: { at_field: at } }),
                metadata.clone(),
            );

            let read = upcast(v1, &upcasters());
            prop_assert_eq!(&read.event_version, MessageEvent::MODERATION_VERSION);
            prop_assert_eq!(&read.metadata, &metadata);
            let envelope = EventEnvelope::<Message>::try_from(read).map_err(failure)?;
            let moderation = Moderation::default();
            let expected = if flagged {
                MessageEvent::MessageFlagged { flagged_at: at, moderation }
            } else {
                MessageEvent::MessageUnflagged { unflagged_at: at, moderation }
            };
            prop_assert_eq!(envelope.payload, expected);
            prop_assert_eq!(envelope.aggregate_id, aggregate_id);
            prop_assert_eq!(envelope.sequence, sequence);
        }
    }
}
