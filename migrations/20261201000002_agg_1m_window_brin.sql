-- Time-range scans of agg_1m across clients (diagnoser, dashboards, retention) use a BRIN
-- index on window_start_ts instead of a B-tree: windows are written in roughly the order of
-- their time, so block ranges summarise them in a few pages, and a new window costs two B-tree
-- inserts instead of three. The
-- minmax-multi operator class keeps ranges narrow when late events or space freed by
-- retention put an old window beside new ones; autosummarize has autovacuum summarise each
-- block range as soon as it fills.
DROP INDEX IF EXISTS agg_1m_window_idx;
CREATE INDEX IF NOT EXISTS agg_1m_window_brin ON agg_1m
    USING brin (window_start_ts timestamptz_minmax_multi_ops) WITH (autosummarize = on);
