-- Per-series robust baselines learnt by the diagnoser from non-anomalous windows.
CREATE TABLE IF NOT EXISTS baselines (
    client_id   text             NOT NULL,
    target      text             NOT NULL,
    metric      text             NOT NULL,
    -- 0..23 for an hour-of-day baseline, -1 for the all-day one.
    hour_of_day smallint         NOT NULL DEFAULT -1 CHECK (hour_of_day BETWEEN -1 AND 23),
    median      double precision NOT NULL,
    mad         double precision NOT NULL,
    p05         double precision,
    p95         double precision,
    n_windows   integer          NOT NULL,
    from_ts     timestamptz      NOT NULL,
    until_ts    timestamptz      NOT NULL,
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, target, metric, hour_of_day)
);

-- One row per anomalous window and label.
CREATE TABLE IF NOT EXISTS diagnoses (
    id              bigserial        PRIMARY KEY,
    client_id       text             NOT NULL,
    target          text             NOT NULL,
    window_start_ts timestamptz      NOT NULL,
    label           text             NOT NULL
        CHECK (label IN ('dns', 'connect', 'tls', 'server', 'throughput', 'errors', 'loss')),
    scope           text             NOT NULL CHECK (scope IN ('target', 'client', 'pair')),
    severity        text             NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    metric          text             NOT NULL,
    observed        double precision,
    baseline        double precision,
    score           double precision,
    detail          jsonb            NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (client_id, target, window_start_ts, label)
);

CREATE INDEX IF NOT EXISTS diagnoses_window_idx ON diagnoses (window_start_ts);
CREATE INDEX IF NOT EXISTS diagnoses_target_window_idx ON diagnoses (target, window_start_ts);
CREATE INDEX IF NOT EXISTS diagnoses_label_scope_idx ON diagnoses (label, scope, window_start_ts);

-- Anomalous minutes of one label, scope and entity grouped over time.
CREATE TABLE IF NOT EXISTS incidents (
    id            bigserial   PRIMARY KEY,
    label         text        NOT NULL
        CHECK (label IN ('dns', 'connect', 'tls', 'server', 'throughput', 'errors', 'loss')),
    scope         text        NOT NULL CHECK (scope IN ('target', 'client', 'pair')),
    client_id     text,
    target        text,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz NOT NULL,
    open          boolean     NOT NULL DEFAULT true,
    peak_severity text        NOT NULL CHECK (peak_severity IN ('minor', 'major', 'critical')),
    windows       integer     NOT NULL,
    summary       text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_at > started_at),
    CHECK ((scope = 'target') = (client_id IS NULL)),
    CHECK ((scope = 'client') = (target IS NULL))
);

CREATE INDEX IF NOT EXISTS incidents_started_idx ON incidents (started_at);
CREATE INDEX IF NOT EXISTS incidents_open_idx ON incidents (label, scope, client_id, target) WHERE open;

-- Where the diagnoser's last run stopped (agg_1m.updated_at it has processed up to).
CREATE TABLE IF NOT EXISTS diagnoser_watermark (
    name       text        PRIMARY KEY,
    watermark  timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
