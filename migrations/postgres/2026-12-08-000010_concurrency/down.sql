DROP INDEX warren_tasks_flow_running;
DROP INDEX warren_tasks_flow_due;
DROP FUNCTION warren_flow_key(TEXT, TEXT);
ALTER TABLE warren_tasks DROP COLUMN flow_key;
ALTER TABLE warren_task_types DROP COLUMN concurrency_key;
ALTER TABLE warren_task_types DROP COLUMN concurrency;
