-- No JIT compilation for the consumer's role either. Its statements each touch one batch, but
-- their plans over the partitioned realtime_events cost enough to cross jit_above_cost: the
-- session refresh spent ~30 ms of every ~150 ms compiling (EXPLAIN ANALYZE's JIT section on the
-- ingest benchmark's database), more than the aggregation itself over 2,000 sessions' events.
ALTER ROLE dwh_writer SET jit = off;
