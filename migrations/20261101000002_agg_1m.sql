-- One row per (client, target, epoch-aligned minute): mergeable window state plus the
-- percentiles derived from it. Timings are in milliseconds, throughput in kbit/s.
CREATE TABLE IF NOT EXISTS agg_1m (
    client_id       text        NOT NULL,
    target          text        NOT NULL,
    window_start_ts timestamptz NOT NULL,

    count_total   bigint NOT NULL DEFAULT 0,
    count_success bigint NOT NULL DEFAULT 0,
    count_error   bigint NOT NULL DEFAULT 0,

    dns_error_count        bigint NOT NULL DEFAULT 0,
    tcp_error_count        bigint NOT NULL DEFAULT 0,
    tls_error_count        bigint NOT NULL DEFAULT 0,
    http_error_count       bigint NOT NULL DEFAULT 0,
    throughput_error_count bigint NOT NULL DEFAULT 0,
    timeout_error_count    bigint NOT NULL DEFAULT 0,

    dns_count bigint NOT NULL DEFAULT 0,
    dns_p50 double precision,
    dns_p95 double precision,
    dns_p99 double precision,
    dns_min double precision,
    dns_max double precision,
    tcp_count bigint NOT NULL DEFAULT 0,
    tcp_p50 double precision,
    tcp_p95 double precision,
    tcp_p99 double precision,
    tcp_min double precision,
    tcp_max double precision,
    tls_count bigint NOT NULL DEFAULT 0,
    tls_p50 double precision,
    tls_p95 double precision,
    tls_p99 double precision,
    tls_min double precision,
    tls_max double precision,
    ttfb_count bigint NOT NULL DEFAULT 0,
    ttfb_p50 double precision,
    ttfb_p95 double precision,
    ttfb_p99 double precision,
    ttfb_min double precision,
    ttfb_max double precision,
    total_count bigint NOT NULL DEFAULT 0,
    total_p50 double precision,
    total_p95 double precision,
    total_p99 double precision,
    total_min double precision,
    total_max double precision,

    throughput_count bigint NOT NULL DEFAULT 0,
    throughput_p05   double precision,
    throughput_p50   double precision,
    throughput_p95   double precision,

    ping_sent     bigint NOT NULL DEFAULT 0,
    ping_received bigint NOT NULL DEFAULT 0,
    jitter_count  bigint NOT NULL DEFAULT 0,
    jitter_p50    double precision,

    -- Serialised sketches and counters the percentiles are recomputed from on every merge.
    sketch_state bytea NOT NULL,
    -- Incremented on every write; a cached copy with an older version is stale.
    version      bigint NOT NULL DEFAULT 1,
    -- Newest ingest receive time merged into the row (pipeline freshness).
    last_recv_ts timestamptz,

    diagnosis_label text,
    updated_at      timestamptz NOT NULL DEFAULT now(),

    PRIMARY KEY (client_id, target, window_start_ts)
) WITH (fillfactor = 70);
-- Every merge rewrites its row: the free space lets most rewrites stay on the same page as
-- heap-only (HOT) updates that touch no index, as long as no indexed column changes.

-- Diagnoser and dashboards scan time ranges, per target and across clients.
CREATE INDEX IF NOT EXISTS agg_1m_window_idx ON agg_1m (window_start_ts);
CREATE INDEX IF NOT EXISTS agg_1m_target_window_idx ON agg_1m (target, window_start_ts);
-- updated_at is deliberately not indexed: an index on it would turn every merge into a
-- non-HOT update of all indexes. Readers looking for re-written windows (late events) scan a
-- window_start_ts range and filter on updated_at.
