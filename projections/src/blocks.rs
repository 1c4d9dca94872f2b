//! The blocks projection: who has blocked whom from sending them private messages, for the
//! pages that show it. (Whether a message may be sent is decided on the command side, from
//! the event store; this view only shows the state.)
//!
//! One table, `blocks` (in schema `blocks_v<version>`), one row per current block. A batch is
//! reduced to each pair's last word — a block or an unblock, both from the blocker's stream,
//! so in order — then written with one delete and one insert.

use std::collections::BTreeMap;

use cqrs_es::persist::EventUpcaster;
use database::event_log::StoredEvent;
use domain::{User, UserEvent};

use crate::log::Decode as _;
use crate::projection::{Projection, ViewChange, CLAIM_HELD};

/// Current blocks, from the `user` aggregate's events.
pub struct Blocks;

impl Projection for Blocks {
    fn name(&self) -> &'static str {
        "blocks"
    }

    fn version(&self) -> i32 {
        1
    }

    fn aggregate_type(&self) -> &'static str {
        "user"
    }

    fn create_tables_sql(&self, schema: &str) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {schema}.blocks (
                 blocker text NOT NULL,
                 blocked text NOT NULL,
                 PRIMARY KEY (blocker, blocked)
             );"
        )
    }

    fn create_indexes_sql(&self, _schema: &str) -> String {
        // The primary key answers the one question asked: does this blocker block that user.
        String::new()
    }

    fn plan_batch(
        &self,
        schema: &str,
        events: &[StoredEvent],
        upcasters: &[Box<dyn EventUpcaster>],
    ) -> anyhow::Result<Vec<ViewChange>> {
        let mut last_word = BTreeMap::new();
        let mut forgotten = Vec::new();
        for event in events {
            let envelope = event.decode::<User>(upcasters)?;
            let blocker = envelope.aggregate_id;
            match envelope.payload {
                UserEvent::UserBlocked { blocked, .. } => {
                    last_word.insert((blocker, blocked), true);
                }
                UserEvent::UserUnblocked { unblocked, .. } => {
                    last_word.insert((blocker, unblocked), false);
                }
                UserEvent::UserForgotten { .. } => forgotten.push(blocker),
                _ => {}
            }
        }
        let (mut lifted, mut imposed) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        for ((blocker, other), &blocks) in &last_word {
            let pairs = if blocks { &mut imposed } else { &mut lifted };
            pairs.0.push(blocker.as_str());
            pairs.1.push(other.as_str());
        }
        let mut plan = Vec::new();
        if !lifted.0.is_empty() {
            plan.push(
                ViewChange::new(format!(
                    "DELETE FROM {schema}.blocks b \
                     USING UNNEST($1::text[], $2::text[]) AS w(blocker, blocked) \
                     WHERE b.blocker = w.blocker AND b.blocked = w.blocked AND {CLAIM_HELD}"
                ))
                .bind(lifted.0)
                .bind(lifted.1),
            );
        }
        if !imposed.0.is_empty() {
            plan.push(
                ViewChange::new(format!(
                    "INSERT INTO {schema}.blocks (blocker, blocked) \
                     SELECT * FROM UNNEST($1::text[], $2::text[]) WHERE {CLAIM_HELD} \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(imposed.0)
                .bind(imposed.1),
            );
        }
        if !forgotten.is_empty() {
            // Last: nobody blocks or is blocked by a forgotten user after the forgetting.
            plan.push(
                ViewChange::new(format!(
                    "DELETE FROM {schema}.blocks \
                     WHERE (blocker = ANY($1) OR blocked = ANY($1)) AND {CLAIM_HELD}"
                ))
                .bind(forgotten),
            );
        }
        Ok(plan)
    }
}
