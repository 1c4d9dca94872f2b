-- The notification of committed events names what was appended, so that each replica wakes
-- only the projectors with work: `aggregate_type:transaction_id:global_position`, one per
-- aggregate type a statement appended to, with the last position of that type. Before, a
-- constant payload woke every projector of every replica on every append, and three of the
-- four ran an empty batch each time; and the projector of the very type, already woken by
-- its writer in-process and done, ran another.
CREATE OR REPLACE FUNCTION notify_events_appended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    appended_type record;
BEGIN
    FOR appended_type IN
        SELECT aggregate_type, max(global_position) AS position FROM appended
        GROUP BY aggregate_type
    LOOP
        PERFORM pg_notify(
            'minitwit_events',
            appended_type.aggregate_type || ':' || pg_current_xact_id() || ':'
                || appended_type.position
        );
    END LOOP;
    RETURN NULL;
END;
$$;

DROP TRIGGER events_appended ON events;
CREATE TRIGGER events_appended
    AFTER INSERT ON events
    REFERENCING NEW TABLE AS appended
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();
