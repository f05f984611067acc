DROP TABLE warren_settings;
DROP TABLE warren_nodes;
DROP TABLE warren_scheduled;
DROP TABLE warren_task_metadata;
DROP TABLE warren_tasks;
