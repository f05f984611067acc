DROP TRIGGER warren_tasks_key_data;
DROP TRIGGER warren_tasks_key_new;
DROP INDEX warren_tasks_flow_running;
DROP INDEX warren_tasks_flow_due;
DROP INDEX warren_tasks_due;
CREATE INDEX warren_tasks_due ON warren_tasks (cluster, priority, next_attempt, id)
    WHERE state = 'pending';
ALTER TABLE warren_tasks DROP COLUMN flow_key;
ALTER TABLE warren_task_types DROP COLUMN concurrency_key;
ALTER TABLE warren_task_types DROP COLUMN concurrency;
