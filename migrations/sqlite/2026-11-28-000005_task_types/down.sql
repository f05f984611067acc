DROP TABLE warren_task_types;
