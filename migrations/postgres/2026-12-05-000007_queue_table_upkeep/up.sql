-- Autovacuum for the queue table. Every task's row is updated at least twice (claim,
-- completion) and deleted when pruned, so dead rows pile up at two to three times the
-- task rate. PostgreSQL's defaults vacuum a table once a fifth of it is dead: with a
-- million finished tasks kept, that is 200,000 dead rows whose index entries every claim
-- walks past. Here vacuum starts after 1% (plus 1,000 rows) and may work five times
-- faster than the default cost limit allows.
--
-- No fill factor: these updates cannot be HOT (they change `state`, which the partial
-- indexes' predicates read), so free space in the page would not be reused by them.
ALTER TABLE warren_tasks SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 1000
);
