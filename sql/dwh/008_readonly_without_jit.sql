-- No JIT compilation for the analysts' role (Superset's dashboards and SQL Lab).
-- A whole-history aggregate over the daily partitions is one plan per partition: on 10M events
-- over 99 partitions PostgreSQL spent ~5 s JIT-compiling them for a query that runs in ~1-2 s
-- (benchmarks/warehouse_queries.py, EXPLAIN ANALYZE's JIT section). The role setting applies to
-- every session it opens from now on, in every database.
ALTER ROLE dwh_readonly SET jit = off;
