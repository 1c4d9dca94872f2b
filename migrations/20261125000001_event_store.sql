-- The event store: postgres-es's `events` table plus three columns it never sees.
--
-- postgres-es names every column it reads and writes, so the extra columns (filled by their
-- defaults) and the trigger below are invisible to it. They exist from the first migration
-- on: added later to a populated table, every old row would get the migration's xid and a
-- physical-order position, losing the real order.
CREATE TABLE events (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    sequence        bigint      NOT NULL CHECK (sequence >= 0),
    event_type      text        NOT NULL,
    event_version   text        NOT NULL,
    payload         json        NOT NULL,
    metadata        json        NOT NULL,
    -- The global log order. Identity values are handed out at INSERT but become visible at
    -- COMMIT, so on its own this column may show a later position before an earlier one.
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    -- The writing transaction. Catch-up readers only read rows whose transaction is older
    -- than every transaction still running (the snapshot's xmin), so nothing can still
    -- appear behind their checkpoint; see projections/src/projector.rs.
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    -- The optimistic-concurrency key: two writers of the same stream version collide here.
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position_key ON events (global_position);
-- The catch-up readers' order and range scans.
CREATE INDEX events_transaction_position_idx ON events (transaction_id, global_position);

-- Wake the projectors of every replica when events commit. A statement-level trigger and a
-- constant payload: PostgreSQL folds identical notifications of one transaction into one,
-- and delivers them only at commit, which is exactly when readers can see the rows.
CREATE FUNCTION notify_events_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('minitwit_events', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER events_appended
    AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();
