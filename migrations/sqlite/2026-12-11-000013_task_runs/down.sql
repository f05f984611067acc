DROP TABLE warren_task_runs;
