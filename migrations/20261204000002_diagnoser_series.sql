-- The diagnoser's tables keyed by series (client_id, target, probe_kind, ip_version), as agg_1m
-- is since 20261204000001. No released code ever wrote baselines, diagnoses, incidents or
-- diagnoser_watermark, so they are dropped and recreated rather than altered.
DROP TABLE IF EXISTS baselines, diagnoses, incidents, diagnoser_watermark;

-- What the diagnoser has learnt of each series: the decayed histograms and failure counts its
-- baselines come from (postcard, format byte first), so a run reads the new windows and this
-- row, never the series' history.
CREATE TABLE diagnoser_series (
    client_id   text             NOT NULL,
    target      text             NOT NULL,
    probe_kind  text             NOT NULL,
    ip_version  smallint         NOT NULL,
    state       bytea            NOT NULL,
    first_ts    timestamptz      NOT NULL,
    -- Newest window folded into the state; a window at or before it is never folded again.
    last_ts     timestamptz      NOT NULL,
    windows     bigint           NOT NULL,
    -- The series' own measurement interval (typical gap between its windows).
    interval_s  double precision NOT NULL,
    updated_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, target, probe_kind, ip_version)
);

-- Per-series, per-metric baselines in the metric's own unit (ms, kbit/s, fraction), for
-- people, dashboards and the report. hour_of_day is -1 for the all-day baseline.
CREATE TABLE baselines (
    client_id   text             NOT NULL,
    target      text             NOT NULL,
    probe_kind  text             NOT NULL,
    ip_version  smallint         NOT NULL,
    metric      text             NOT NULL,
    hour_of_day smallint         NOT NULL DEFAULT -1 CHECK (hour_of_day BETWEEN -1 AND 23),
    median      double precision NOT NULL,
    -- Spread: MAD of the log values for timings and throughput, of the rate for rates.
    mad         double precision NOT NULL,
    -- Normal band: values between band_low and band_high are never anomalous.
    band_low    double precision NOT NULL,
    band_high   double precision NOT NULL,
    n_windows   bigint           NOT NULL,
    from_ts     timestamptz      NOT NULL,
    until_ts    timestamptz      NOT NULL,
    computed_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, target, probe_kind, ip_version, metric, hour_of_day)
);

-- One row per anomalous window: its main label (the stage that explains it), where the fault
-- is localised, and the evidence.
CREATE TABLE diagnoses (
    client_id       text             NOT NULL,
    target          text             NOT NULL,
    probe_kind      text             NOT NULL,
    ip_version      smallint         NOT NULL,
    window_start_ts timestamptz      NOT NULL,
    label           text             NOT NULL
        CHECK (label IN ('dns', 'connect', 'tls', 'server', 'throughput', 'errors', 'loss')),
    scope           text             NOT NULL CHECK (scope IN ('target', 'client', 'pair')),
    severity        text             NOT NULL CHECK (severity IN ('minor', 'major', 'critical')),
    metric          text             NOT NULL,
    observed        double precision,
    baseline        double precision,
    score           double precision,
    detail          text             NOT NULL,
    -- The series' measurement interval when diagnosed (incident gaps tolerate two of them).
    interval_s      double precision NOT NULL,
    created_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, target, probe_kind, ip_version, window_start_ts)
);

CREATE INDEX diagnoses_window_idx ON diagnoses (window_start_ts);

-- Anomalous minutes of one label, scope and entity grouped over time.
CREATE TABLE incidents (
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
    -- Distinct anomalous minutes, and the series they came from.
    windows       integer     NOT NULL,
    series        integer     NOT NULL,
    summary       text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (ended_at > started_at),
    CHECK ((scope = 'target') = (client_id IS NULL)),
    CHECK ((scope = 'client') = (target IS NULL))
);

CREATE INDEX incidents_started_idx ON incidents (started_at);
CREATE INDEX incidents_ended_idx ON incidents (ended_at);

-- Where the diagnoser stopped: the newest window it processed, and when (database clock) the
-- run that processed it read agg_1m, so the next run finds windows rewritten since.
CREATE TABLE diagnoser_watermark (
    name        text        PRIMARY KEY,
    watermark   timestamptz NOT NULL,
    last_run_at timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
