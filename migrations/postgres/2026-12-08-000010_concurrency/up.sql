-- Per-key concurrency (src/store/flow.rs). A task type may run at most `concurrency`
-- tasks at once across all nodes, per distinct value of its data field
-- `concurrency_key` (or in all, without one). Nodes register the rule with the type's
-- cluster; every task of such a type in that cluster carries its key in `flow_key`
-- (NULL for all others), computed by the database when the task is written, so every
-- scheduler agrees whatever it knows of the rule.
ALTER TABLE warren_task_types ADD COLUMN concurrency INTEGER CHECK (concurrency > 0);
ALTER TABLE warren_task_types ADD COLUMN concurrency_key TEXT;
ALTER TABLE warren_tasks ADD COLUMN flow_key TEXT;

-- The key of a task of a type with a rule: the data field's value (a string as it is,
-- a number or boolean as its JSON text; absent, null, an object or an array: ''), or ''
-- when the rule has no key field. Data holding a NUL escape (\u0000, which
-- PostgreSQL's text cannot hold, so reading the field could fail) keys as '', so such a
-- task is still scheduled and the rule still holds for it. A plain SQL function, which
-- PostgreSQL inlines into the statements that use it.
CREATE FUNCTION warren_flow_key(task_data TEXT, key_field TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN key_field IS NULL THEN ''
        WHEN strpos(task_data, E'\\u0000') > 0 THEN ''
        ELSE coalesce(CASE json_typeof(task_data::json -> key_field)
            WHEN 'string' THEN task_data::json ->> key_field
            WHEN 'number' THEN (task_data::json -> key_field)::text
            WHEN 'boolean' THEN (task_data::json -> key_field)::text
        END, '')
    END
$$;

-- The plain claim walks `warren_tasks_due`: from now on it holds only tasks without a
-- key, so a backlog of keyed tasks waiting for their keys never slows it.
DROP INDEX warren_tasks_due;
CREATE INDEX warren_tasks_due ON warren_tasks (cluster, priority, next_attempt, id)
    WHERE state = 'pending' AND flow_key IS NULL;
-- The constrained claim reads these two: the keys with pending tasks and each key's
-- due tasks in queue order, and the running tasks per (type, key). Neither holds a task
-- without a key, so they cost nothing when no rule is used.
CREATE INDEX warren_tasks_flow_due ON warren_tasks (task_type, flow_key, cluster, priority, next_attempt, id)
    WHERE state = 'pending' AND flow_key IS NOT NULL;
CREATE INDEX warren_tasks_flow_running ON warren_tasks (task_type, flow_key)
    WHERE state = 'running' AND flow_key IS NOT NULL;
