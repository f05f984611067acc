CREATE INDEX warren_tasks_type ON warren_tasks (task_type, id);
