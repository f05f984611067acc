-- Per-key concurrency (src/store/flow.rs): see the PostgreSQL migration of the same
-- name. SQLite has no stored functions: the key's expression lives in
-- src/store/flow.rs.
ALTER TABLE warren_task_types ADD COLUMN concurrency INTEGER CHECK (concurrency > 0);
ALTER TABLE warren_task_types ADD COLUMN concurrency_key TEXT;
ALTER TABLE warren_tasks ADD COLUMN flow_key TEXT;
-- The plain claim's index holds only tasks without a key.
DROP INDEX warren_tasks_due;
CREATE INDEX warren_tasks_due ON warren_tasks (cluster, priority, next_attempt, id)
    WHERE state = 'pending' AND flow_key IS NULL;
CREATE INDEX warren_tasks_flow_due ON warren_tasks (task_type, flow_key, cluster, priority, next_attempt, id)
    WHERE state = 'pending' AND flow_key IS NOT NULL;
CREATE INDEX warren_tasks_flow_running ON warren_tasks (task_type, flow_key)
    WHERE state = 'running' AND flow_key IS NOT NULL;
