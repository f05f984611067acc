-- Rate limits: see the PostgreSQL migration of the same name (`concurrency_key` holds
-- the key field of both rules). The triggers that key tasks now key those of a type
-- with either rule.
DROP TRIGGER warren_tasks_key_data;
DROP TRIGGER warren_tasks_key_new;
ALTER TABLE warren_task_types ADD COLUMN rate_count INTEGER CHECK (rate_count > 0);
ALTER TABLE warren_task_types ADD COLUMN rate_period_ms BIGINT CHECK (rate_period_ms > 0);
ALTER TABLE warren_task_types ADD COLUMN rate_burst INTEGER CHECK (rate_burst > 0);

CREATE TABLE warren_rate_buckets (
    task_type TEXT NOT NULL,
    flow_key TEXT NOT NULL,
    tat BIGINT NOT NULL,
    PRIMARY KEY (task_type, flow_key)
);

-- The key of a task of a type with a rule, in the type's registered cluster: the data
-- field's value (a string as it is, a number or boolean as its text; absent, null, an
-- object or an array: ''), or '' when the rules have no key field.
CREATE TRIGGER warren_tasks_key_new AFTER INSERT ON warren_tasks
WHEN EXISTS (SELECT 1 FROM warren_task_types
             WHERE task_type = NEW.task_type AND cluster = NEW.cluster
               AND (concurrency IS NOT NULL OR rate_count IS NOT NULL))
BEGIN
    -- Fires `warren_tasks_key_data` below, which holds the rule.
    UPDATE warren_tasks SET data = data WHERE id = NEW.id;
END;
-- New data (a restart's, a debounce's) may mean a new key; the store also writes
-- `data = data` to key tasks again after a rule changed (NULL when there is none).
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
            AND (tt.concurrency IS NOT NULL OR tt.rate_count IS NOT NULL)
            AND tt.cluster = NEW.cluster)
    WHERE id = NEW.id;
END;
