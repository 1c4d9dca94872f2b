//! How stored events of older versions are read as the current version.
//!
//! Stored rows are never rewritten: every reader of the log (the command side loading an
//! aggregate, and every projector) passes each row through [`upcasters`] before
//! deserialising it. When a payload changes, bump the event's version in its aggregate module
//! and register here an upcaster from the previous version.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};

/// Every upcaster, oldest first. Empty while every event is still at its first version.
pub fn upcasters() -> Vec<Box<dyn EventUpcaster>> {
    Vec::new()
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
