-- The runs of a task worth telling apart from the task's own row (src/store/run_history.rs):
-- every run except a completion that logged nothing, whose times the task's row
-- holds. What the task's code logged is kept with its run, bounded; a task keeps its
-- newest runs only, and its runs go with it when it is deleted.
CREATE TABLE warren_task_runs (
    task_id BIGINT NOT NULL REFERENCES warren_tasks (id) ON DELETE CASCADE,
    lease_token BIGINT NOT NULL,
    node TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT,
    log TEXT NOT NULL,
    PRIMARY KEY (task_id, lease_token)
);
