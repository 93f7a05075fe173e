-- Liveness of the long-running processes (consumer, Spark app, Connect), read by the
-- stream_supervisor DAG and charted in Superset. One row per component, updated in place.
CREATE TABLE IF NOT EXISTS pipeline_heartbeats (
    component    varchar(50) PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    details      jsonb       NOT NULL DEFAULT '{}'
);
GRANT SELECT, INSERT, UPDATE ON pipeline_heartbeats TO dwh_writer;
