DROP INDEX warren_tasks_leases;
CREATE INDEX warren_tasks_leases ON warren_tasks (lease_until) WHERE state = 'running';
