-- Blue/green projection versions: the states the replay tool moves versions through, and a
-- notification when a projection's active version changes.
--
-- scratch: built by `minitwit-replay verify` to compare with the active version, then dropped;
-- no server serves or projects it, and no rebuild resumes it.
ALTER TABLE projection_checkpoints DROP CONSTRAINT projection_checkpoints_state_check;
ALTER TABLE projection_checkpoints ADD CONSTRAINT projection_checkpoints_state_check
    CHECK (state IN ('building', 'active', 'retired', 'scratch'));

-- At most one active version per projection: the switch retires the old one in the same
-- transaction that activates the new.
CREATE UNIQUE INDEX projection_checkpoints_one_active
    ON projection_checkpoints (projection) WHERE state = 'active';

-- Tell every replica when a version changes state, so that servers move to a newly activated
-- version at once. Payload: projection:version:state.
CREATE FUNCTION notify_projection_state() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'minitwit_projection_state',
        NEW.projection || ':' || NEW.version || ':' || NEW.state
    );
    RETURN NULL;
END;
$$;

CREATE TRIGGER projection_state_changed
    AFTER UPDATE OF state ON projection_checkpoints
    FOR EACH ROW EXECUTE FUNCTION notify_projection_state();
