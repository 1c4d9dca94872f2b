-- `minitwit_reader`: reads the event log and nothing else. Grafana connects as it to show the
-- events a request wrote next to that request's log lines (the Logs dashboard); an operator
-- may use it for ad-hoc queries that must not be able to write. Like `minitwit_server` it is
-- created able to log in but without a password (`minitwit-replay migrate
-- --reader-password-file` gives it one), may be created by another database's migrations
-- at the same moment, and is left out, with a notice, where the migrating role may not
-- create roles.
CREATE FUNCTION create_role_if_allowed(role_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
        BEGIN
            EXECUTE format('CREATE ROLE %I LOGIN', role_name);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE NOTICE 'the role % was not created (this role may not create roles)',
                    role_name;
                RETURN false;
        END;
    END IF;
    RETURN true;
END;
$$;

DO $$
BEGIN
    IF create_role_if_allowed('minitwit_reader') THEN
        GRANT SELECT ON events TO minitwit_reader;
    END IF;
END
$$;
