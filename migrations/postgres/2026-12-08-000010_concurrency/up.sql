-- Per-key concurrency (src/store/flow.rs). A task type may run at most `concurrency`
-- tasks at once across all nodes, per distinct value of its data field
-- `concurrency_key` (or in all, without one). Nodes register the rule with the type's
-- cluster; every task of such a type carries its key in `flow_key` (NULL for all
-- others), computed by the database when the task is written, so every scheduler
-- agrees whatever it knows of the rule.
ALTER TABLE warren_task_types ADD COLUMN concurrency INTEGER CHECK (concurrency > 0);
ALTER TABLE warren_task_types ADD COLUMN concurrency_key TEXT;
ALTER TABLE warren_tasks ADD COLUMN flow_key TEXT;

-- The key of a task of a type with a rule: the data field's value (a string as it is,
-- a number or boolean as its JSON text; absent, null, an object or an array: ''), or ''
-- when the rule has no key field.
CREATE FUNCTION warren_flow_key(task_data TEXT, key_field TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN key_field IS NULL THEN ''
        ELSE coalesce(CASE jsonb_typeof(task_data::jsonb -> key_field)
            WHEN 'string' THEN task_data::jsonb ->> key_field
            WHEN 'number' THEN (task_data::jsonb -> key_field)::text
            WHEN 'boolean' THEN (task_data::jsonb -> key_field)::text
        END, '')
    END
$$;

-- The constrained claim reads these two: the due tasks of each (type, key) in queue
-- order, and the running ones per (type, key). Neither holds a task of a type without a
-- rule, so they cost nothing when no rule is used.
CREATE INDEX warren_tasks_flow_due ON warren_tasks (task_type, flow_key, cluster, priority, next_attempt, id)
    WHERE state = 'pending' AND flow_key IS NOT NULL;
CREATE INDEX warren_tasks_flow_running ON warren_tasks (task_type, flow_key)
    WHERE state = 'running' AND flow_key IS NOT NULL;
