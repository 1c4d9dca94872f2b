-- The backups the admin tool has made (`minitwit-replay backup`): one row per finished
-- backup file, kept while the file is (the job deletes the rows of the files it prunes). The
-- servers read the newest for the metric `minitwit_backup_last_success_timestamp_seconds`,
-- which the BackupTooOld alert watches; a failed backup leaves no row, so the metric shows
-- the last one that succeeded.
CREATE TABLE backups (
    file        text        PRIMARY KEY,
    finished_at timestamptz NOT NULL DEFAULT now(),
    events      bigint      NOT NULL CHECK (events >= 0),
    -- The log's highest position in the backup (none: the log was empty).
    head        bigint
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'minitwit_server') THEN
        GRANT SELECT ON backups TO minitwit_server;
    END IF;
END
$$;
