-- How far the latest run of a task said it had got (src/store/progress.rs). A table of
-- its own, not columns of warren_tasks: a long task may report every second, and each
-- write would otherwise leave a dead version of the queue's hottest row behind. Written
-- outside the run's transaction while the run goes on; `lease_token` names the run that
-- reported it, so a later run of the task does not show an earlier one's progress.
CREATE TABLE warren_task_progress (
    task_id BIGINT PRIMARY KEY REFERENCES warren_tasks (id) ON DELETE CASCADE,
    lease_token BIGINT NOT NULL,
    fraction DOUBLE PRECISION NOT NULL,
    message TEXT,
    reported_at BIGINT NOT NULL
);
