-- A series is one client measuring one target with one probe kind over one address family
-- (SPEC §5): a tcp and a ping probe of the same host:port, or the IPv4 and IPv6 measurements
-- of one URL, are different series and get rows of their own. Rows written before this
-- migration belong to the defaults (probe kind http, ip_version 0 = not said).
ALTER TABLE agg_1m
    ADD COLUMN IF NOT EXISTS probe_kind text NOT NULL DEFAULT 'http'
        CHECK (probe_kind IN ('http', 'tcp', 'dns', 'ping')),
    ADD COLUMN IF NOT EXISTS ip_version smallint NOT NULL DEFAULT 0
        CHECK (ip_version IN (0, 4, 6));

ALTER TABLE agg_1m DROP CONSTRAINT IF EXISTS agg_1m_pkey;
ALTER TABLE agg_1m ADD PRIMARY KEY (client_id, target, probe_kind, ip_version, window_start_ts);
