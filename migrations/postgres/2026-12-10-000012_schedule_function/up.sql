-- Scheduling from any language, in the caller's own transaction:
--
--   SELECT warren_schedule('mail:send', '{"to": "a@example.com"}', '{"priority": "interactive"}');
--
-- returns the new task's id (or, for a task with a unique key that has a duplicate,
-- the duplicate's id). It takes the options `POST /api/tasks` takes, by the same names
-- and with the same rules (src/store/schedule.rs, src/store/unique.rs,
-- actors/src/task_spec.rs), so a task scheduled here is the row the Rust API would
-- have written. The nodes are woken when the caller commits; a rolled-back transaction
-- leaves no task and wakes nobody. Task SQL may not call it (task code schedules
-- through the host API): the run's statement policy refuses every warren_* name.
--
-- Errors are raised with SQLSTATE 22023 (invalid_parameter_value) and a message that
-- names the argument or option at fault: `warren_schedule: options.priority: …`.

CREATE FUNCTION warren_schedule_error(field TEXT, message TEXT) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = '22023', MESSAGE = 'warren_schedule: ' || field || ': ' || message;
END
$$;

-- `value` without leading and trailing white space, as Rust's `str::trim` takes it off
-- (Unicode's White_Space; PostgreSQL's trim() takes off only spaces).
CREATE FUNCTION warren_schedule_trim(value TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(value,
        '^[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$',
        '', 'g')
$$;

-- A metadata key in lower case as Rust's `to_lowercase` has it (the key Warren looks
-- metadata up by): with ICU's root locale where PostgreSQL has ICU, else lower() in
-- the database's own locale (which agrees on ASCII).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu') THEN
        CREATE FUNCTION warren_schedule_key_norm(key TEXT) RETURNS TEXT
        LANGUAGE sql IMMUTABLE AS 'SELECT lower(key COLLATE "und-x-icu")';
    ELSE
        CREATE FUNCTION warren_schedule_key_norm(key TEXT) RETURNS TEXT
        LANGUAGE sql IMMUTABLE AS 'SELECT lower(key)';
    END IF;
END
$$;

CREATE FUNCTION warren_schedule(task_type TEXT, data JSONB, options JSONB DEFAULT '{}')
RETURNS BIGINT
LANGUAGE plpgsql
SET search_path FROM CURRENT
AS $$
DECLARE
    known CONSTANT TEXT[] := ARRAY['priority', 'not_before', 'timeout_ms', 'aux_data',
        'metadata', 'cluster', 'unique_key', 'unique_states', 'unique_period_ms',
        'debounce_ms', 'debounce_max_ms', 'allow_unknown_type'];
    max_unique_ms CONSTANT BIGINT := 365::bigint * 24 * 60 * 60 * 1000;
    now_ms BIGINT := floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint;
    opt TEXT;
    v JSONB;
    registered TEXT;
    t_priority INTEGER := 0;
    t_not_before BIGINT;
    t_timeout BIGINT := 0;
    t_aux TEXT;
    t_cluster TEXT;
    u_key TEXT;
    u_states INTEGER := 3;
    u_period BIGINT;
    u_debounce BIGINT;
    u_debounce_max BIGINT;
    allow_unknown BOOLEAN := false;
    stored_key TEXT;
    earliest BIGINT;
    due BIGINT;
    new_id BIGINT;
    dup RECORD;
    state_name TEXT;
    meta_key TEXT;
BEGIN
    -- The type: `module:type`, each part letters, digits, '_', '-' and '.'.
    IF task_type IS NULL THEN
        PERFORM warren_schedule_error('task_type', 'missing: every task needs one');
    END IF;
    IF length(task_type) > 400 THEN
        PERFORM warren_schedule_error('task_type', format('%s… is longer than 400 characters', left(task_type, 40)));
    END IF;
    IF task_type !~ '^[A-Za-z0-9_.-]+:[A-Za-z0-9_.-]+$' THEN
        PERFORM warren_schedule_error('task_type', format(
            '''%s'' is not module:type (each part letters, digits, ''_'', ''-'' and ''.'')', task_type));
    END IF;
    data := coalesce(data, '{}');
    IF jsonb_typeof(data) <> 'object' THEN
        PERFORM warren_schedule_error('data', 'must be a JSON object, got ' || jsonb_typeof(data));
    END IF;
    options := coalesce(options, '{}');
    IF jsonb_typeof(options) <> 'object' THEN
        PERFORM warren_schedule_error('options', 'must be a JSON object, got ' || jsonb_typeof(options));
    END IF;

    FOR opt, v IN SELECT key, value FROM jsonb_each(options) LOOP
        CONTINUE WHEN jsonb_typeof(v) = 'null';
        CASE opt
        WHEN 'priority' THEN
            IF jsonb_typeof(v) = 'string' AND lower(warren_schedule_trim(v #>> '{}') COLLATE "C") IN
                    ('background', 'normal', 'interactive', 'update', 'updateinteractive') THEN
                t_priority := CASE lower(warren_schedule_trim(v #>> '{}') COLLATE "C")
                    WHEN 'background' THEN 100 WHEN 'normal' THEN 0 WHEN 'interactive' THEN -100
                    WHEN 'update' THEN -200 ELSE -300 END;
            ELSIF warren_schedule_trim(v #>> '{}') ~ '^[+-]?[0-9]+$'
                    AND warren_schedule_trim(v #>> '{}')::numeric BETWEEN -2147483648 AND 2147483647 THEN
                t_priority := warren_schedule_trim(v #>> '{}')::integer;
            ELSE
                PERFORM warren_schedule_error('options.priority', format(
                    'unknown priority %s: use a number or one of background, normal, interactive, update, updateinteractive', v));
            END IF;
        WHEN 'not_before' THEN
            -- Milliseconds (a number, or text of one), or RFC 3339 text with its offset,
            -- as the API reads them.
            IF trim(v #>> '{}') ~ '^[+-]?[0-9]+$'
                    AND trim(v #>> '{}')::numeric BETWEEN -9223372036854775808 AND 9223372036854775807 THEN
                t_not_before := trim(v #>> '{}')::bigint;
            ELSIF jsonb_typeof(v) = 'string' AND trim(v #>> '{}')
                    ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$' THEN
                BEGIN
                    t_not_before := floor(extract(epoch FROM trim(v #>> '{}')::timestamptz) * 1000)::bigint;
                EXCEPTION WHEN others THEN
                    PERFORM warren_schedule_error('options.not_before', format(
                        'invalid instant %s: use milliseconds since the Unix epoch or RFC 3339 (2026-11-28T10:00:00Z)', v));
                END;
            ELSE
                PERFORM warren_schedule_error('options.not_before', format(
                    'invalid instant %s: use milliseconds since the Unix epoch or RFC 3339 (2026-11-28T10:00:00Z)', v));
            END IF;
        WHEN 'timeout_ms' THEN
            IF jsonb_typeof(v) <> 'number' OR (v #>> '{}') !~ '^[0-9]+$'
                    OR (v #>> '{}')::numeric > 9223372036854775807 THEN
                PERFORM warren_schedule_error('options.timeout_ms', format(
                    'invalid %s: use 0 (the task type''s timeout) or a positive whole number of milliseconds', v));
            END IF;
            t_timeout := (v #>> '{}')::bigint;
        WHEN 'aux_data' THEN
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM warren_schedule_error('options.aux_data', 'must be a JSON object, got ' || jsonb_typeof(v));
            END IF;
            t_aux := v::text;
        WHEN 'metadata' THEN
            IF jsonb_typeof(v) <> 'object' THEN
                PERFORM warren_schedule_error('options.metadata', 'must be an object of strings, got ' || jsonb_typeof(v));
            END IF;
            FOR meta_key IN SELECT key FROM jsonb_each(v) WHERE jsonb_typeof(value) <> 'string' LOOP
                PERFORM warren_schedule_error('options.metadata', format(
                    'the value of ''%s'' must be a string, got %s', meta_key, jsonb_typeof(v -> meta_key)));
            END LOOP;
            IF EXISTS (SELECT 1 FROM jsonb_object_keys(v) k WHERE warren_schedule_trim(k) = '') THEN
                PERFORM warren_schedule_error('options.metadata', 'keys must not be empty');
            END IF;
        WHEN 'cluster' THEN
            IF jsonb_typeof(v) <> 'string' OR (v #>> '{}') !~ '^[A-Za-z0-9_.-]+$' THEN
                PERFORM warren_schedule_error('options.cluster', format(
                    '%s is not a cluster name (letters, digits, ''_'', ''-'' and ''.'')', v));
            END IF;
            t_cluster := v #>> '{}';
        WHEN 'unique_key' THEN
            IF jsonb_typeof(v) <> 'string' THEN
                PERFORM warren_schedule_error('options.unique_key', 'must be a string, got ' || jsonb_typeof(v));
            END IF;
            u_key := v #>> '{}';
            IF warren_schedule_trim(u_key) = '' THEN
                PERFORM warren_schedule_error('options.unique_key', 'must not be empty');
            ELSIF octet_length(u_key) > 512 THEN
                PERFORM warren_schedule_error('options.unique_key', format('is %s bytes long, at most 512', octet_length(u_key)));
            ELSIF u_key ~ '[\u0001-\u001f\u007f-\u009f]' THEN
                PERFORM warren_schedule_error('options.unique_key', 'must not contain control characters');
            END IF;
        WHEN 'unique_states' THEN
            IF jsonb_typeof(v) NOT IN ('string', 'array') THEN
                PERFORM warren_schedule_error('options.unique_states', 'must be an array of state names, got ' || jsonb_typeof(v));
            END IF;
            IF jsonb_typeof(v) = 'array' AND EXISTS (
                    SELECT 1 FROM jsonb_array_elements(v) e WHERE jsonb_typeof(e) <> 'string') THEN
                PERFORM warren_schedule_error('options.unique_states', 'must hold state names');
            END IF;
            FOR state_name IN
                SELECT lower(warren_schedule_trim(s) COLLATE "C") FROM regexp_split_to_table(
                    CASE jsonb_typeof(v) WHEN 'string' THEN v #>> '{}'
                    ELSE (SELECT string_agg(e, ',') FROM jsonb_array_elements_text(v) e) END, ',') s
                WHERE warren_schedule_trim(s) <> ''
            LOOP
                u_states := u_states | CASE state_name
                    WHEN 'pending' THEN 1 WHEN 'running' THEN 2 WHEN 'completed' THEN 4
                    WHEN 'failed' THEN 8 WHEN 'cancelled' THEN 16 ELSE 0 END;
                IF state_name NOT IN ('pending', 'running', 'completed', 'failed', 'cancelled') THEN
                    PERFORM warren_schedule_error('options.unique_states', format(
                        '''%s'' is not a state (pending, running, completed, failed, cancelled)', state_name));
                END IF;
            END LOOP;
        WHEN 'unique_period_ms', 'debounce_ms', 'debounce_max_ms' THEN
            IF jsonb_typeof(v) <> 'number' OR (v #>> '{}') !~ '^[0-9]+$'
                    OR (v #>> '{}')::numeric NOT BETWEEN 1 AND max_unique_ms THEN
                PERFORM warren_schedule_error('options.' || opt, format(
                    '%s is not a number of ms from 1 to %s (one year)', v, max_unique_ms));
            END IF;
            CASE opt
            WHEN 'unique_period_ms' THEN u_period := (v #>> '{}')::bigint;
            WHEN 'debounce_ms' THEN u_debounce := (v #>> '{}')::bigint;
            ELSE u_debounce_max := (v #>> '{}')::bigint;
            END CASE;
        WHEN 'allow_unknown_type' THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                PERFORM warren_schedule_error('options.allow_unknown_type', format('invalid %s: use true or false', v));
            END IF;
            allow_unknown := v::text::boolean;
        ELSE
            PERFORM warren_schedule_error('options', format(
                'unknown option ''%s'': the options are %s', opt, array_to_string(known, ', ')));
        END CASE;
    END LOOP;

    IF u_key IS NULL THEN
        FOREACH opt IN ARRAY ARRAY['unique_states', 'unique_period_ms', 'debounce_ms', 'debounce_max_ms'] LOOP
            IF jsonb_typeof(options -> opt) IS DISTINCT FROM 'null' AND options ? opt THEN
                PERFORM warren_schedule_error('options.' || opt, 'applies only to a task with a unique key');
            END IF;
        END LOOP;
    END IF;
    IF u_debounce_max IS NOT NULL AND u_debounce IS NULL THEN
        PERFORM warren_schedule_error('options.debounce_max_ms', 'needs a debounce delay');
    END IF;
    IF u_debounce IS NOT NULL AND coalesce(u_debounce_max, u_debounce * 10) < u_debounce THEN
        PERFORM warren_schedule_error('options.debounce_max_ms', format(
            '%s ms is shorter than the debounce delay (%s ms)', u_debounce_max, u_debounce));
    END IF;

    -- The type must be one a node has registered, unless the caller says otherwise; a
    -- task without a cluster goes to its type's registered one, else `default`.
    SELECT tt.cluster INTO registered FROM warren_task_types tt WHERE tt.task_type = warren_schedule.task_type;
    IF NOT FOUND AND NOT allow_unknown THEN
        PERFORM warren_schedule_error('task_type', format(
            'unknown task type ''%s'': no node has registered it (no module a node has loaded declares it); '
            'pass {"allow_unknown_type": true} in options to schedule it anyway', task_type));
    END IF;
    t_cluster := coalesce(t_cluster, registered, 'default');

    -- A debounced task waits its delay before it first starts, too.
    earliest := now_ms + coalesce(u_debounce, 0);
    due := greatest(coalesce(t_not_before, earliest), earliest);
    IF u_key IS NOT NULL THEN
        stored_key := u_key || CASE WHEN u_period IS NULL THEN ''
            ELSE chr(31) || (now_ms - mod(mod(now_ms, u_period) + u_period, u_period))::text END;
    END IF;

    -- Inserted unless a task that counts holds the key: then that task's id, debounced
    -- if asked and still pending. An insert that meets an uncommitted duplicate waits
    -- for it; the look after it finds nothing only when that duplicate finished in
    -- between, and then it tries again.
    FOR attempt IN 1..10 LOOP
        INSERT INTO warren_tasks (task_type, cluster, state, data, aux_data, priority, timeout_ms,
            created_at, not_before, next_attempt, unique_key, unique_states, flow_key)
        SELECT warren_schedule.task_type, t_cluster, 'pending', data::text, t_aux, t_priority,
            t_timeout, now_ms, t_not_before, due, stored_key,
            CASE WHEN u_key IS NULL THEN NULL ELSE u_states END,
            (SELECT warren_flow_key(data::text, tt.concurrency_key) FROM warren_task_types tt
             WHERE tt.task_type = warren_schedule.task_type
               AND (tt.concurrency IS NOT NULL OR tt.rate_count IS NOT NULL)
               AND tt.cluster = t_cluster)
        ON CONFLICT DO NOTHING
        RETURNING id INTO new_id;
        IF new_id IS NOT NULL THEN
            IF options ? 'metadata' AND jsonb_typeof(options -> 'metadata') = 'object' THEN
                -- A key given twice in different case keeps one value, as in the Rust API.
                INSERT INTO warren_task_metadata (task_id, key_norm, key, value)
                SELECT DISTINCT ON (warren_schedule_key_norm(m.key)) new_id,
                    warren_schedule_key_norm(m.key), m.key, m.value
                FROM jsonb_each_text(options -> 'metadata') m
                ORDER BY warren_schedule_key_norm(m.key), m.key COLLATE "C" DESC;
            END IF;
            IF due <= now_ms THEN
                PERFORM pg_notify('warren_tasks', t_cluster);
            END IF;
            RETURN new_id;
        END IF;
        SELECT t.id, t.state, t.created_at, t.next_attempt INTO dup
        FROM warren_tasks t
        WHERE t.task_type = warren_schedule.task_type AND t.unique_key = stored_key
          AND t.unique_key IS NOT NULL AND (t.unique_states & CASE t.state WHEN 'pending' THEN 1
              WHEN 'running' THEN 2 WHEN 'completed' THEN 4 WHEN 'failed' THEN 8
              WHEN 'cancelled' THEN 16 ELSE 0 END) <> 0
        LIMIT 1;
        IF FOUND THEN
            IF u_debounce IS NOT NULL AND dup.state = 'pending' THEN
                UPDATE warren_tasks t
                SET data = warren_schedule.data::text, aux_data = t_aux,
                    next_attempt = greatest(least(now_ms + u_debounce,
                        dup.created_at + coalesce(u_debounce_max, u_debounce * 10)), dup.next_attempt),
                    -- Its data changed, so may its key (kept as it is for a type with no rule).
                    flow_key = CASE WHEN EXISTS (SELECT 1 FROM warren_task_types tt
                            WHERE tt.task_type = t.task_type
                              AND (tt.concurrency IS NOT NULL OR tt.rate_count IS NOT NULL))
                        THEN (SELECT warren_flow_key(warren_schedule.data::text, tt.concurrency_key)
                            FROM warren_task_types tt
                            WHERE tt.task_type = t.task_type
                              AND (tt.concurrency IS NOT NULL OR tt.rate_count IS NOT NULL)
                              AND tt.cluster = t.cluster)
                        ELSE t.flow_key END
                WHERE t.id = dup.id AND t.state = 'pending';
            END IF;
            RETURN dup.id;
        END IF;
    END LOOP;
    RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = format(
        'warren_schedule: tasks of type %s with unique key ''%s'' kept appearing and finishing while this one was scheduled',
        task_type, u_key);
END
$$;
