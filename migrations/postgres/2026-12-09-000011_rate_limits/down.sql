-- Tasks keyed only for a rate limit lose their key, or no claim of the version before
-- would ever take them.
UPDATE warren_tasks SET flow_key = NULL
WHERE flow_key IS NOT NULL
  AND task_type NOT IN (SELECT task_type FROM warren_task_types WHERE concurrency IS NOT NULL);
UPDATE warren_task_types SET concurrency_key = NULL WHERE concurrency IS NULL;
DROP TABLE warren_rate_buckets;
ALTER TABLE warren_task_types DROP CONSTRAINT warren_task_types_rate_whole;
ALTER TABLE warren_task_types DROP COLUMN rate_burst;
ALTER TABLE warren_task_types DROP COLUMN rate_period_ms;
ALTER TABLE warren_task_types DROP COLUMN rate_count;
