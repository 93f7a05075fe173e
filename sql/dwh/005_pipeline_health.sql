-- Every check of the stream_supervisor DAG: one row per component and run, with what it saw
-- (heartbeat age, consumer-group lag, connector state) and what it did. Superset charts it.
CREATE TABLE IF NOT EXISTS pipeline_health_checks (
    id         bigserial    PRIMARY KEY,
    checked_at timestamptz  NOT NULL DEFAULT now(),
    component  varchar(50)  NOT NULL,
    status     varchar(20)  NOT NULL,
    action     varchar(50)  NOT NULL DEFAULT 'none',
    details    jsonb        NOT NULL DEFAULT '{}',
    run_id     varchar(250),
    CONSTRAINT pipeline_health_checks_status_check
        CHECK (status IN ('healthy', 'starting', 'degraded', 'stuck', 'down', 'unreachable'))
);
CREATE INDEX IF NOT EXISTS pipeline_health_checks_component_idx
    ON pipeline_health_checks (component, checked_at DESC);

-- The supervisor writes checks and reads the heartbeats; dwh_readonly reads both (default privileges).
GRANT SELECT, INSERT ON pipeline_health_checks TO dwh_maintainer;
GRANT USAGE ON SEQUENCE pipeline_health_checks_id_seq TO dwh_maintainer;
GRANT SELECT ON pipeline_heartbeats TO dwh_maintainer;
