//! The command side's own event store writes and reads the table postgres-es defines, in
//! postgres-es's format: events appended through it read back through postgres-es's
//! repository as they were written, and a stream postgres-es wrote loads through it. The
//! `events` table stays a cqrs-es/postgres-es event store that the crates' own tools can
//! read, although our appends take one statement instead of a transaction per event. Sealed
//! personal fields travel as stored: postgres-es reads them sealed, and the keyring opens
//! them.

use chrono::{TimeZone, Utc};
use commands::store::AggregateStore;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, AggregateContext, EventEnvelope, EventStore};
use database::sealing::EventIdentity;
use domain::{PasswordHash, User, UserEvent};
use postgres_es::PostgresEventRepository;
use std::collections::HashMap;
use test_support::database::TestDatabase;

fn registered(username: &str) -> UserEvent {
    UserEvent::UserRegistered {
        username: username.to_owned(),
        email: format!("{username}@example.com"),
        password_hash: PasswordHash::new("$argon2id$test".to_owned()),
        registered_at: Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap(),
    }
}

fn followed(followee: &str) -> UserEvent {
    UserEvent::UserFollowed {
        followee: followee.to_owned(),
        followed_at: Utc.with_ymd_and_hms(2026, 12, 3, 12, 1, 0).unwrap(),
    }
}

#[tokio::test]
async fn our_appends_read_back_through_postgres_es_and_its_writes_load_through_ours() {
    let db = TestDatabase::create().await;
    let keys = db.keys().await;
    let store = AggregateStore::<User>::new(db.pool.clone(), keys.clone(), 1_000);
    let metadata = HashMap::from([("request_id".to_owned(), "r-1".to_owned())]);

    // Two events in one append, as one command would write them.
    let mut context = store.load_aggregate("alice").await.unwrap();
    let events = vec![registered("alice"), followed("bob")];
    for event in &events {
        context.aggregate().apply(event.clone());
    }
    let committed = store
        .commit(events.clone(), context, metadata.clone())
        .await
        .unwrap();
    assert_eq!(
        committed.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2]
    );

    let repository = PostgresEventRepository::new(db.pool.clone());
    let read: Vec<SerializedEvent> = repository.get_events::<User>("alice").await.unwrap();
    let sealed = &read[0].payload["UserRegistered"];
    assert!(sealed["email"].get("sealed").is_some(), "{sealed}");
    assert!(sealed["password_hash"].get("sealed").is_some(), "{sealed}");
    let mut opened = Vec::new();
    for mut event in read {
        let identity = EventIdentity {
            aggregate_type: &event.aggregate_type,
            aggregate_id: &event.aggregate_id,
            sequence: i64::try_from(event.sequence).unwrap(),
        };
        keys.open_payload(identity, &mut event.payload)
            .await
            .unwrap();
        opened.push(EventEnvelope::<User>::try_from(event).unwrap());
    }
    let read = opened;
    assert_eq!(
        read.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
        events
    );
    assert_eq!(read[0].metadata, metadata);
    assert_eq!(read[1].sequence, 2);

    // postgres-es appends the third event the way it always did…
    let third = SerializedEvent::try_from(&EventEnvelope::<User> {
        aggregate_id: "alice".to_owned(),
        sequence: 3,
        payload: followed("carol"),
        metadata: HashMap::new(),
    })
    .unwrap();
    repository.persist::<User>(&[third], None).await.unwrap();
    // …and our store, which kept alice's state after its own append, catches up with it.
    let mut context = store.load_aggregate("alice").await.unwrap();
    assert!(context.aggregate().follows("bob"));
    assert!(context.aggregate().follows("carol"));
    let fourth = followed("dave");
    context.aggregate().apply(fourth.clone());
    let committed = store
        .commit(vec![fourth], context, HashMap::new())
        .await
        .unwrap();
    assert_eq!(committed[0].sequence, 4);

    // A decision on a state the stream has moved past appends nothing.
    let stale = store.load_aggregate("alice").await.unwrap();
    let fifth = SerializedEvent::try_from(&EventEnvelope::<User> {
        aggregate_id: "alice".to_owned(),
        sequence: 5,
        payload: followed("erin"),
        metadata: HashMap::new(),
    })
    .unwrap();
    repository.persist::<User>(&[fifth], None).await.unwrap();
    let refused = store
        .commit(vec![followed("frank")], stale, HashMap::new())
        .await;
    assert!(
        matches!(refused, Err(cqrs_es::AggregateError::AggregateConflict)),
        "{refused:?}"
    );
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'user' AND aggregate_id = 'alice'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(count, 5);
}

/// A projector's batch is claimed in one statement whose read of the events must be a range
/// of the `(aggregate_type, transaction_id, global_position)` index that starts at the
/// checkpoint. Written as a plain join, PostgreSQL scanned every event of the type and
/// filtered them against the checkpoint afterwards — correct, and slower with every event
/// ever written (a tenth of a second per batch on a million messages). The plan must bound
/// the index scan by the checkpoint, and the claim must return exactly what follows it.
#[tokio::test]
async fn a_batch_claim_reads_the_events_after_its_checkpoint_as_an_index_range() {
    use database::event_log::{self, BatchScope, CheckpointMove, Claim, LogPosition};

    let db = TestDatabase::create().await;
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
             payload, metadata) \
         SELECT 'message', 'm' || n, 1, 'MessagePosted', '1.0', '{}', '{}' \
         FROM generate_series(1, 3000) AS n",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // The checkpoint stands ten events before the end.
    let (tx, position): (i64, i64) = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM events \
         ORDER BY global_position DESC OFFSET 10 LIMIT 1",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE projection_checkpoints \
         SET last_tx = $1::bigint::text::xid8, last_position = $2 \
         WHERE projection = 'timeline' AND state = 'active'",
    )
    .bind(tx)
    .bind(position)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE events")
        .execute(&db.pool)
        .await
        .unwrap();

    let end = i64::MAX;
    let mut conn = db.pool.begin().await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {}",
        event_log::claim_batch_sql()
    ))
    .bind("projection:timeline_v1")
    .bind("timeline")
    .bind(1)
    .bind("message")
    .bind(500_i64)
    .bind(end)
    .bind(end)
    .bind(true)
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    conn.rollback().await.unwrap();
    let bounded = plan.iter().any(|line| {
        line.contains("Index Cond:")
            && line.contains(
                "ROW(transaction_id, global_position) > ROW(checkpoint.last_tx, \
                 checkpoint.last_position)",
            )
    });
    assert!(
        bounded,
        "the events are not read as a range from the checkpoint:\n{}",
        plan.join("\n")
    );

    let mut conn = db.pool.begin().await.unwrap();
    let claim = event_log::claim_batch(
        &mut conn,
        BatchScope {
            lock_name: "projection:timeline_v1",
            projection: "timeline",
            version: 1,
            aggregate_type: "message",
            until: LogPosition {
                transaction_id: end,
                global_position: end,
            },
            limit: 500,
            checkpoint_move: CheckpointMove::InClaim,
        },
    )
    .await
    .unwrap()
    .unwrap();
    let Claim::Batch { from, events, more } = claim else {
        panic!("expected a batch, got {claim:?}");
    };
    assert_eq!(
        from,
        LogPosition {
            transaction_id: tx,
            global_position: position
        }
    );
    assert_eq!(events.len(), 10);
    assert!(events
        .iter()
        .all(|event| event.position.global_position > position));
    assert!(!more, "nothing follows the last ten");
    conn.rollback().await.unwrap();
}
