-- Each projector reads the events of one aggregate type in log order. With only the
-- `(transaction_id, global_position)` index it walked every event and fetched each row to
-- see its type, so the accounts projector stepped over every message (a million of them on
-- a rebuild, or when registrations are rare), and the timeline over every follow. This
-- index gives each type its own stretch, already in log order.
CREATE INDEX events_type_transaction_position_idx
    ON events (aggregate_type, transaction_id, global_position);
