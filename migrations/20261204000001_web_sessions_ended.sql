-- A notification for every browser session that ends (signed out, replaced at sign-in, or
-- swept when expired), on any replica: each replica ends the live streams that session
-- opened, so a signed-out browser stops receiving what only a signed-in user may see. The
-- payload is the session's id.
CREATE FUNCTION notify_web_sessions_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ended record;
BEGIN
    FOR ended IN SELECT id FROM ended_sessions LOOP
        PERFORM pg_notify('minitwit_sessions_ended', ended.id);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER web_sessions_ended
    AFTER DELETE ON web_sessions
    REFERENCING OLD TABLE AS ended_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_web_sessions_ended();
