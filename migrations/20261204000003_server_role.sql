-- Least privilege: `minitwit_server`, the role the servers connect as wherever a deployment
-- separates roles (compose and the embedded default do). It reads and appends events and
-- keeps everything derived or transient (the views, their checkpoints, `latest`, sessions,
-- attempt budgets). It cannot change or delete an event, and cannot create, alter or drop
-- anything: the schema and the views' tables are the owner's, which the migrations and the
-- admin tool run as.
--
-- A role belongs to the cluster, not to one database. Several databases may share it (the
-- tests' throwaway ones, two deployments on one server), and may try to create it at the same
-- moment. It is created able to log in but without a password: over password
-- authentication it cannot log in until the owner gives it one (`minitwit-replay migrate
-- --server-password-file`), and over trust or peer authentication (the embedded cluster's
-- private socket) it needs none. A migrating role that may not create roles leaves it out,
-- with a notice, and the servers then run as whichever role they are configured with.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'minitwit_server') THEN
        BEGIN
            CREATE ROLE minitwit_server LOGIN;
        EXCEPTION
            -- Another database's migration created it first.
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'the role minitwit_server was not created (this role may not '
                    'create roles); the servers run as the role they are configured with';
        END;
    END IF;
END
$$;

-- Lets the server role read and maintain the tables of one view schema (a projection's
-- version). Called by whoever creates a version's tables: the owner, at set-up or in a
-- rebuild. Does nothing where the role does not exist.
CREATE FUNCTION grant_view_access(view_schema text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'minitwit_server') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO minitwit_server', view_schema);
        EXECUTE format(
            'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO minitwit_server',
            view_schema);
    END IF;
END;
$$;

DO $$
DECLARE
    view_schema text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'minitwit_server') THEN
        RETURN;
    END IF;
    -- The log: read and append, nothing else. Its positions come from an identity column,
    -- whose sequence needs no grant of its own.
    GRANT SELECT, INSERT ON events TO minitwit_server;
    -- Checkpoints are moved by the servers' projectors; versions are created, switched and
    -- dropped by the owner (the admin tool).
    GRANT SELECT, UPDATE ON projection_checkpoints TO minitwit_server;
    GRANT SELECT, INSERT, UPDATE ON simulator_latest TO minitwit_server;
    GRANT SELECT, INSERT, UPDATE, DELETE ON web_sessions, attempt_budgets, sign_in_failures
        TO minitwit_server;
    -- The first replica to start generates the cookie key; it is never changed.
    GRANT SELECT, INSERT ON web_session_key TO minitwit_server;
    -- Readiness checks that every migration of the build is applied, and start-up skips
    -- migrating when they are.
    GRANT SELECT ON _sqlx_migrations TO minitwit_server;
    -- The views that exist already; later ones are granted as they are created.
    FOR view_schema IN
        SELECT DISTINCT n.nspname
        FROM projection_checkpoints c
        JOIN pg_namespace n ON n.nspname = c.projection || '_v' || c.version
    LOOP
        PERFORM grant_view_access(view_schema);
    END LOOP;
END
$$;

-- Before PostgreSQL 15 every role could create tables in `public`; from 15 on this changes
-- nothing. Only the schema's owner may revoke it: elsewhere the warning is harmless.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
