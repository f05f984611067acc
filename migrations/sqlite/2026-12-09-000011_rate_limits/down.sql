DROP TRIGGER warren_tasks_key_data;
DROP TRIGGER warren_tasks_key_new;
-- Tasks keyed only for a rate limit lose their key, or no claim of the version before
-- would ever take them.
UPDATE warren_tasks SET flow_key = NULL
WHERE flow_key IS NOT NULL
  AND task_type NOT IN (SELECT task_type FROM warren_task_types WHERE concurrency IS NOT NULL);
UPDATE warren_task_types SET concurrency_key = NULL WHERE concurrency IS NULL;
DROP TABLE warren_rate_buckets;
ALTER TABLE warren_task_types DROP COLUMN rate_burst;
ALTER TABLE warren_task_types DROP COLUMN rate_period_ms;
ALTER TABLE warren_task_types DROP COLUMN rate_count;
CREATE TRIGGER warren_tasks_key_new AFTER INSERT ON warren_tasks
WHEN EXISTS (SELECT 1 FROM warren_task_types
             WHERE task_type = NEW.task_type AND concurrency IS NOT NULL AND cluster = NEW.cluster)
BEGIN
    UPDATE warren_tasks SET data = data WHERE id = NEW.id;
END;
CREATE TRIGGER warren_tasks_key_data AFTER UPDATE OF data ON warren_tasks
BEGIN
    UPDATE warren_tasks SET flow_key = (
        SELECT CASE WHEN tt.concurrency_key IS NULL THEN '' ELSE coalesce(
            CASE json_type(NEW.data, '$."' || tt.concurrency_key || '"')
                WHEN 'text' THEN json_extract(NEW.data, '$."' || tt.concurrency_key || '"')
                WHEN 'integer' THEN CAST(json_extract(NEW.data, '$."' || tt.concurrency_key || '"') AS TEXT)
                WHEN 'real' THEN CAST(json_extract(NEW.data, '$."' || tt.concurrency_key || '"') AS TEXT)
                WHEN 'true' THEN 'true'
                WHEN 'false' THEN 'false'
            END, '') END
        FROM warren_task_types tt WHERE tt.task_type = NEW.task_type
            AND tt.concurrency IS NOT NULL AND tt.cluster = NEW.cluster)
    WHERE id = NEW.id;
END;
