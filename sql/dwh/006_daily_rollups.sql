-- Daily rollups for the dashboards. The spec's typical queries aggregate the whole history: on
-- 10M events they take seconds (benchmarks/warehouse_queries.py). These tables hold one row per
-- day (and customer, product or session outcome). `instashop.rollups.refresh` fills them (the
-- dwh_rollups DAG: yesterday and today every 15 minutes, any range by hand) by recomputing whole
-- days from realtime_events and customer_sessions, so a day's rows equal the spec query restricted
-- to that day as of its last refresh. A session counts on the day of its "timestamp" (its end, or
-- its start while open). Sums and counts are kept, never averages: the average over days is
-- sum(revenue) / sum(amounts), exactly AVG's value. `instashop.rollups.DASHBOARD_QUERIES` are the
-- spec's four queries answered from them.

CREATE TABLE IF NOT EXISTS daily_sales (
    day          date    PRIMARY KEY,
    transactions bigint  NOT NULL,  -- count(*) of event_type 'transaction'
    revenue      numeric,           -- sum(amount)
    amounts      bigint  NOT NULL   -- count(amount): the divisor of the average ticket
);

CREATE TABLE IF NOT EXISTS daily_customer_activity (
    day           date         NOT NULL,
    customer_id   integer      NOT NULL,
    customer_name varchar(255),
    events        bigint       NOT NULL,  -- every event of the customer
    transactions  bigint       NOT NULL,
    spend         numeric,                -- sum of the transactions' amounts
    UNIQUE NULLS NOT DISTINCT (day, customer_id, customer_name)
);

CREATE TABLE IF NOT EXISTS daily_product_sales (
    day          date         NOT NULL,
    product_id   integer,
    product_name varchar(255),
    category     varchar(100),
    items        bigint       NOT NULL,  -- count(*) of event_type 'transaction_item'
    revenue      numeric,                -- sum(amount)
    amounts      bigint       NOT NULL,  -- count(amount)
    UNIQUE NULLS NOT DISTINCT (day, product_id, product_name, category)
);

CREATE TABLE IF NOT EXISTS daily_session_outcomes (
    day          date        NOT NULL,
    outcome      varchar(50),            -- NULL: sessions still open
    sessions     bigint      NOT NULL,
    duration_sum numeric,                -- sum of the seconds from start_time to "timestamp"
    durations    bigint      NOT NULL,   -- how many of them had a start_time
    UNIQUE NULLS NOT DISTINCT (day, outcome)
);

-- Filled once here from what the warehouse already holds (the same statements as the refresh's, over
-- all days): the scheduled refreshes only recompute yesterday and today.
INSERT INTO daily_sales (day, transactions, revenue, amounts)
SELECT "timestamp"::date, count(*), sum(amount), count(amount)
FROM realtime_events WHERE event_type = 'transaction'
GROUP BY "timestamp"::date;

INSERT INTO daily_customer_activity (day, customer_id, customer_name, events, transactions, spend)
SELECT "timestamp"::date, customer_id, customer_name, count(*), count(*) FILTER (WHERE event_type = 'transaction'),
       sum(CASE WHEN event_type = 'transaction' THEN amount ELSE 0 END)
FROM realtime_events WHERE customer_id IS NOT NULL
GROUP BY "timestamp"::date, customer_id, customer_name;

INSERT INTO daily_product_sales (day, product_id, product_name, category, items, revenue, amounts)
SELECT "timestamp"::date, product_id, product_name, category, count(*), sum(amount), count(amount)
FROM realtime_events WHERE event_type = 'transaction_item'
GROUP BY "timestamp"::date, product_id, product_name, category;

INSERT INTO daily_session_outcomes (day, outcome, sessions, duration_sum, durations)
SELECT "timestamp"::date, outcome, count(*), sum(duration), count(duration)
FROM (SELECT "timestamp", outcome,
             extract(epoch FROM ("timestamp" - (session_data->>'start_time')::timestamp)) AS duration
      FROM customer_sessions WHERE "timestamp" IS NOT NULL) s
GROUP BY "timestamp"::date, outcome;

-- All-time totals per customer for the customers dashboard: even the daily rollup has a row per
-- customer and active day (~560k for 10M events), too many to sum on every view. Recomputed from it
-- after every refresh of the days, in one transaction (readers keep the old totals meanwhile).
CREATE TABLE IF NOT EXISTS customer_totals (
    customer_id   integer      NOT NULL,
    customer_name varchar(255),
    total_eventos bigint       NOT NULL,
    transacciones bigint       NOT NULL,
    gasto_total   numeric,
    UNIQUE NULLS NOT DISTINCT (customer_id, customer_name)
);
INSERT INTO customer_totals (customer_id, customer_name, total_eventos, transacciones, gasto_total)
SELECT customer_id, customer_name, sum(events), sum(transactions), sum(spend)
FROM daily_customer_activity
GROUP BY customer_id, customer_name;

-- The refresh runs as dwh_maintainer (it reads realtime_events as its owner); Superset and SQL Lab
-- read the rollups as dwh_readonly.
GRANT SELECT ON customer_sessions TO dwh_maintainer;
GRANT SELECT, INSERT, DELETE
    ON daily_sales, daily_customer_activity, daily_product_sales, daily_session_outcomes, customer_totals TO dwh_maintainer;
GRANT SELECT ON daily_sales, daily_customer_activity, daily_product_sales, daily_session_outcomes, customer_totals
    TO dwh_readonly;
