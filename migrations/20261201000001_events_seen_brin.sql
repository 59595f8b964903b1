-- Retention finds old event ids by seen_at, which grows with the insertion order: a BRIN
-- index (a few pages) serves that scan, where the B-tree cost one more index insert for
-- every event merged.
DROP INDEX IF EXISTS events_seen_seen_at_idx;
CREATE INDEX IF NOT EXISTS events_seen_seen_at_brin ON events_seen USING brin (seen_at);
