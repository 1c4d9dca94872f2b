-- Crypto-shredding: each person's data key, outside the event log (see `database::sealing`).
-- The personal fields of their events are sealed with it; forgetting them deletes it, and
-- what it sealed becomes unreadable in the log, in every export and on every replica.
--
-- A forgotten person's row stays, without its key, as a tombstone: readers then know the
-- fields are gone on purpose (and show them as removed) rather than that a key is missing
-- (which they refuse, so that a restore without its keys is noticed, not served blank).
CREATE TABLE data_keys (
    subject      text        PRIMARY KEY,
    -- The key, sealed with the master key (which never reaches the database); NULL once
    -- forgotten.
    wrapped_key  bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    forgotten_at timestamptz,
    CHECK ((wrapped_key IS NULL) = (forgotten_at IS NOT NULL))
);

-- A value sealed with the master key when the first key was made, so that a server given
-- another master key refuses to start instead of failing on every sealed field.
CREATE TABLE master_key_check (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    sealed     bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Every replica keeps unwrapped keys in memory; a forgetting tells them all to drop theirs.
CREATE FUNCTION notify_data_key_forgotten() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('data_keys_forgotten', NEW.subject);
    RETURN NULL;
END;
$$;

CREATE TRIGGER data_key_forgotten
    AFTER INSERT OR UPDATE OF forgotten_at ON data_keys
    FOR EACH ROW WHEN (NEW.forgotten_at IS NOT NULL)
    EXECUTE FUNCTION notify_data_key_forgotten();

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'minitwit_server') THEN
        -- Servers make keys as people register and forget people who delete their
        -- accounts; a key, once made, is never replaced.
        GRANT SELECT, INSERT ON data_keys TO minitwit_server;
        GRANT UPDATE (wrapped_key, forgotten_at) ON data_keys TO minitwit_server;
        GRANT SELECT, INSERT ON master_key_check TO minitwit_server;
    END IF;
END
$$;
