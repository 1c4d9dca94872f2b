-- Whose each signed-in browser session is. tower-sessions keeps a session's data opaque
-- (MessagePack), so without this a user's sessions cannot be found: changing the password
-- ends the user's other sessions, and forgetting a user ends all of them, through this
-- table. A row goes with its session (signed out, replaced at sign-in, or expired).
CREATE TABLE web_session_owners (
    session_id text PRIMARY KEY REFERENCES web_sessions (id) ON DELETE CASCADE,
    username   text NOT NULL
);

CREATE INDEX web_session_owners_by_username ON web_session_owners (username);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'minitwit_server') THEN
        GRANT SELECT, INSERT, DELETE ON web_session_owners TO minitwit_server;
    END IF;
END
$$;
