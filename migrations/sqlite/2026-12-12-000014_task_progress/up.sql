-- How far the latest run of a task said it had got (src/store/progress.rs). On SQLite
-- a run's progress is kept in the node's memory while it runs (its transaction may hold
-- the only write lock) and written here when it ends; `lease_token` names the run that
-- reported it, so a later run of the task does not show an earlier one's progress.
CREATE TABLE warren_task_progress (
    task_id BIGINT PRIMARY KEY REFERENCES warren_tasks (id) ON DELETE CASCADE,
    lease_token BIGINT NOT NULL,
    fraction DOUBLE PRECISION NOT NULL,
    message TEXT,
    reported_at BIGINT NOT NULL
);
