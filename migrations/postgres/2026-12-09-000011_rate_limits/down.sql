DROP TABLE warren_rate_buckets;
ALTER TABLE warren_task_types DROP CONSTRAINT warren_task_types_rate_whole;
ALTER TABLE warren_task_types DROP COLUMN rate_burst;
ALTER TABLE warren_task_types DROP COLUMN rate_period_ms;
ALTER TABLE warren_task_types DROP COLUMN rate_count;
ALTER TABLE warren_task_types RENAME COLUMN key_field TO concurrency_key;
