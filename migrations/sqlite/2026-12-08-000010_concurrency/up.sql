-- Per-key concurrency (src/store/flow.rs): see the PostgreSQL migration of the same
-- name. SQLite has no stored functions: triggers key the tasks instead, so every
-- insert (whoever writes it) is keyed in its own statement, and a task without a rule
-- pays only the look in the registry.
ALTER TABLE warren_task_types ADD COLUMN concurrency INTEGER CHECK (concurrency > 0);
ALTER TABLE warren_task_types ADD COLUMN concurrency_key TEXT;
ALTER TABLE warren_tasks ADD COLUMN flow_key TEXT;
-- The plain claim's index holds only tasks without a key.
DROP INDEX warren_tasks_due;
CREATE INDEX warren_tasks_due ON warren_tasks (cluster, priority, next_attempt, id)
    WHERE state = 'pending' AND flow_key IS NULL;
CREATE INDEX warren_tasks_flow_due ON warren_tasks (task_type, flow_key, cluster, priority, next_attempt, id)
    WHERE state = 'pending' AND flow_key IS NOT NULL;
CREATE INDEX warren_tasks_flow_running ON warren_tasks (task_type, flow_key)
    WHERE state = 'running' AND flow_key IS NOT NULL;

-- The key of a task of a type with a rule, in the type's registered cluster: the data
-- field's value (a string as it is, a number or boolean as its text; absent, null, an
-- object or an array: ''), or '' when the rule has no key field.
CREATE TRIGGER warren_tasks_key_new AFTER INSERT ON warren_tasks
WHEN EXISTS (SELECT 1 FROM warren_task_types
             WHERE task_type = NEW.task_type AND concurrency IS NOT NULL AND cluster = NEW.cluster)
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
            AND tt.concurrency IS NOT NULL AND tt.cluster = NEW.cluster)
    WHERE id = NEW.id;
END;
