-- The lease index covers the rows that hold a lease, rather than the rows in state
-- 'running'. With `WHERE state = 'running'` the planner may pick it for the fenced
-- updates of a run (`id = ? AND lease_token = ? AND state = 'running'`), since the
-- index looks nearly empty, and then walk every entry left behind by recently finished
-- tasks instead of looking the row up by its primary key. Nothing in those updates
-- implies `lease_until IS NOT NULL`; the recovery of expired leases
-- (`lease_until < now`) does.
DROP INDEX warren_tasks_leases;
CREATE INDEX warren_tasks_leases ON warren_tasks (lease_until) WHERE lease_until IS NOT NULL;
