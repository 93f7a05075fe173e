-- The warehouse of the spec (spec/DWH_ERD.md): realtime_events and customer_sessions with the
-- spec's columns and types, plus what exactly-once and enrichment need. Times are UTC.

-- One row per business event. Partitioned by day on "timestamp" (daily partitions are created
-- by `instashop partitions ensure` and the dwh_partition_maintenance DAG; rows for a day without
-- a partition land in the default one and are moved out later).
CREATE TABLE IF NOT EXISTS realtime_events (
    id            serial,
    event_type    varchar(50)  NOT NULL,
    "timestamp"   timestamp    NOT NULL,
    customer_id   integer,
    customer_name varchar(255),
    product_id    integer,
    product_name  varchar(255),
    category      varchar(100),
    amount        decimal(12,2),
    session_id    varchar(255),
    raw_data      jsonb,
    processed_at  timestamp    NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    source        varchar(50)  NOT NULL DEFAULT 'kafka_consumer',
    -- Added for exactly-once: the source row ('<table>:<primary key>') and the WAL position of
    -- the last change applied to it. Redelivered or replayed changes never win over newer ones.
    event_key     varchar(120) NOT NULL,
    source_lsn    bigint       NOT NULL,
    PRIMARY KEY (id, "timestamp"),
    UNIQUE (event_key, "timestamp")
) PARTITION BY RANGE ("timestamp");

CREATE TABLE IF NOT EXISTS realtime_events_default PARTITION OF realtime_events DEFAULT;

CREATE INDEX IF NOT EXISTS realtime_events_timestamp_idx ON realtime_events ("timestamp");
CREATE INDEX IF NOT EXISTS realtime_events_event_type_idx ON realtime_events (event_type, "timestamp");
CREATE INDEX IF NOT EXISTS realtime_events_customer_idx ON realtime_events (customer_id);
CREATE INDEX IF NOT EXISTS realtime_events_product_idx ON realtime_events (product_id);
CREATE INDEX IF NOT EXISTS realtime_events_session_idx ON realtime_events (session_id);

-- One row per shop session; outcome is conversion, cart_abandonment or bounce once it ended.
CREATE TABLE IF NOT EXISTS customer_sessions (
    session_id   varchar(100) PRIMARY KEY,
    customer_id  bigint,
    session_data jsonb,
    outcome      varchar(50),
    "timestamp"  timestamp,
    source_lsn   bigint       NOT NULL DEFAULT 0,
    CONSTRAINT customer_sessions_outcome_check
        CHECK (outcome IN ('conversion', 'cart_abandonment', 'bounce'))
);
CREATE INDEX IF NOT EXISTS customer_sessions_timestamp_idx ON customer_sessions ("timestamp");

-- Dimensions for enrichment (customer_name, product_name, category), kept current from CDC.
CREATE TABLE IF NOT EXISTS dim_customers (
    customer_id integer      PRIMARY KEY,
    name        varchar(255) NOT NULL,
    email       varchar(255),
    country     varchar(2),
    created_at  timestamp,
    source_lsn  bigint       NOT NULL
);

CREATE TABLE IF NOT EXISTS dim_products (
    product_id integer       PRIMARY KEY,
    name       varchar(255)  NOT NULL,
    category   varchar(100)  NOT NULL,
    price      numeric(12,2) NOT NULL,
    updated_at timestamp,
    source_lsn bigint        NOT NULL
);

-- Messages the consumer could not turn into rows, with the reason (also on the DLQ topic).
CREATE TABLE IF NOT EXISTS dead_letters (
    id            bigserial   PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    topic         varchar(255) NOT NULL,
    kafka_partition integer   NOT NULL,
    kafka_offset  bigint      NOT NULL,
    message_key   text,
    message_value text,        -- the first 64 KiB; the DLQ topic keeps the whole message
    value_bytes   integer     NOT NULL,
    reason        text        NOT NULL,
    UNIQUE (topic, kafka_partition, kafka_offset)
);

GRANT TEMPORARY ON DATABASE dwh TO dwh_writer;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON realtime_events, customer_sessions, dim_customers, dim_products, dead_letters TO dwh_writer;
GRANT USAGE ON SEQUENCE realtime_events_id_seq, dead_letters_id_seq TO dwh_writer;
