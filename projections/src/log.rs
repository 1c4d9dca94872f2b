//! The log's rows as the domain's events: upcast to their current versions, then
//! deserialised. The rows come from [`database::event_log`], which knows the table but may
//! not know the domain; this is the step between the two.

use cqrs_es::persist::{EventUpcaster, SerializedEvent};
use cqrs_es::{Aggregate, EventEnvelope};
use database::event_log::StoredEvent;

/// Decoding a stored event as an aggregate's event.
pub trait Decode {
    /// Upcasts the payload to the current version and deserialises it as `A`'s event.
    fn decode<A: Aggregate>(
        &self,
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<EventEnvelope<A>>;
}

impl Decode for StoredEvent {
    fn decode<A: Aggregate>(
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
