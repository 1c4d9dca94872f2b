-- Where each projection (by name and version) has got to in the global log.
--
-- The checkpoint is the pair (last_tx, last_position) because the log is read in
-- (transaction_id, global_position) order: a checkpoint on the position alone could skip an
-- event whose transaction started earlier but committed later.
CREATE TABLE projection_checkpoints (
    projection    text        NOT NULL,
    version       integer     NOT NULL CHECK (version > 0),
    last_tx       xid8        NOT NULL DEFAULT '0',
    last_position bigint      NOT NULL DEFAULT 0,
    -- building: being filled from position zero; active: serves reads; retired: replaced.
    state         text        NOT NULL DEFAULT 'building'
                              CHECK (state IN ('building', 'active', 'retired')),
    last_error    text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, version)
);

-- Tell every replica when a projection moves, so a request waiting to read its own write
-- wakes at once whichever replica projected it. Payload: projection:version:tx:position.
CREATE FUNCTION notify_projection_progress() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'minitwit_projection_progress',
        NEW.projection || ':' || NEW.version || ':' || NEW.last_tx || ':' || NEW.last_position
    );
    RETURN NULL;
END;
$$;

CREATE TRIGGER projection_progressed
    AFTER UPDATE OF last_tx, last_position ON projection_checkpoints
    FOR EACH ROW EXECUTE FUNCTION notify_projection_progress();
