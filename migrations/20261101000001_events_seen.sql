-- Event ids already merged into agg_1m: the aggregator's exactly-once ledger.
CREATE TABLE IF NOT EXISTS events_seen (
    event_id  uuid        PRIMARY KEY,
    client_id text        NOT NULL,
    ts_ms     bigint      NOT NULL,
    seen_at   timestamptz NOT NULL DEFAULT now()
);

-- Retention deletes the oldest rows in batches.
CREATE INDEX IF NOT EXISTS events_seen_seen_at_idx ON events_seen (seen_at);
