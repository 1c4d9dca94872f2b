-- Budgets of the browser's sign-in and registration attempts, kept here so that every
-- replica spends from the same ones (behind a load balancer, per-replica budgets multiply
-- by the number of replicas).
--
-- A rate budget (`attempt_budgets`) is a generic cell rate: `full_at` is when the holder's
-- budget will have refilled completely; an attempt is allowed while that lies less than the
-- burst ahead, and pushes it one interval further. Each row belongs to a budget
-- (`sign-in by address`, `registration by address`) and a holder (a client address).
CREATE TABLE attempt_budgets (
    budget  text        NOT NULL,
    holder  text        NOT NULL,
    full_at timestamptz NOT NULL,
    PRIMARY KEY (budget, holder)
);
CREATE INDEX attempt_budgets_full_at_idx ON attempt_budgets (full_at);

-- Wrong passwords for a username from a client address, and when that address may try that
-- username again: after a few failures each costs a wait that doubles, up to a cap, and a
-- successful sign-in clears them. Keyed by both, so that someone guessing from one address
-- never stops the account's owner signing in from another.
CREATE TABLE sign_in_failures (
    username text        NOT NULL,
    address  inet        NOT NULL,
    failures integer     NOT NULL,
    retry_at timestamptz NOT NULL,
    PRIMARY KEY (username, address)
);
CREATE INDEX sign_in_failures_retry_at_idx ON sign_in_failures (retry_at);
