DROP INDEX warren_tasks_flow_running;
DROP INDEX warren_tasks_flow_due;
ALTER TABLE warren_tasks DROP COLUMN flow_key;
ALTER TABLE warren_task_types DROP COLUMN concurrency_key;
ALTER TABLE warren_task_types DROP COLUMN concurrency;
