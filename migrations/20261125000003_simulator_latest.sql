-- The simulator's `latest` value: the id of the last action it sent.
--
-- Not an event: it is the simulator's bookkeeping about its own progress, not a fact of the
-- domain, and it changes on every request. One row, shared by all replicas, so that the
-- simulator can resume after any of them restarts.
CREATE TABLE simulator_latest (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    latest     bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
