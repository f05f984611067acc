DROP TABLE warren_task_progress;
