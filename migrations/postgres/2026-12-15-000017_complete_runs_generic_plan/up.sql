-- warren_complete_runs without planning on every call.
--
-- A PL/pgSQL function keeps a plan per statement and connection, and by default
-- chooses, call by call, between a plan made for the call's own arguments and a generic
-- one. Made for the call's arguments, the UPDATE's plan knows how many runs the arrays
-- hold and always looks cheaper than the generic one (which assumes ten), so every
-- group's commit planned it afresh: in a profile of a 16-runner drain of tasks that
-- insert one row, the function took a third of the server's time, and planning a third
-- of that. Its statements read task rows by primary key whatever their number, so one
-- generic plan per connection serves every call (`plan_cache_mode`), and with
-- sequential scans off that plan is the index's even on an empty table.
--
-- The body does less on the common path, too: the run's transaction is checked inline,
-- the runs that lost their lease are looked for only when fewer rows were completed
-- than runs were given, and the NOTIFY runs only when someone waits.
CREATE OR REPLACE FUNCTION warren_complete_runs(
    task_ids BIGINT[],
    run_tokens BIGINT[],
    task_results TEXT[],
    runs_started BIGINT[],
    runs_finished BIGINT[]
) RETURNS void LANGUAGE plpgsql
SET enable_seqscan = off
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    done_ids BIGINT[];
    done_tokens BIGINT[];
    waited_ids BIGINT[];
    missing BIGINT;
BEGIN
    IF current_setting('warren.run', true) IS DISTINCT FROM '1' THEN
        RAISE EXCEPTION 'warren: the run''s transaction ended before its end was written';
    END IF;
    WITH done AS (
        UPDATE warren_tasks t
        SET state = 'completed', finished_at = r.finished, result = r.result,
            last_error = NULL, last_stack = NULL, lease_owner = NULL, lease_until = NULL,
            iterations = t.iterations + 1, started_at = r.started
        FROM unnest(task_ids, run_tokens, task_results, runs_started, runs_finished)
            AS r(id, token, result, started, finished)
        WHERE t.id = r.id AND t.lease_token = r.token AND t.state = 'running'
        RETURNING t.id, t.lease_token, t.waited
    )
    SELECT array_agg(id), array_agg(lease_token), array_agg(id) FILTER (WHERE waited)
    INTO done_ids, done_tokens, waited_ids
    FROM done;
    -- A run whose token no longer holds its task leaves fewer rows completed than runs
    -- given; only then is the first such run (by task and token) looked for.
    IF coalesce(cardinality(done_ids), 0) < coalesce(cardinality(task_ids), 0) THEN
        SELECT r.id INTO missing
        FROM unnest(task_ids, run_tokens) AS r(id, token)
        WHERE NOT EXISTS (
            SELECT 1 FROM unnest(done_ids, done_tokens) AS d(id, token)
            WHERE d.id = r.id AND d.token = r.token
        )
        LIMIT 1;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'warren: task % is no longer leased to this run', missing;
        END IF;
    END IF;
    IF waited_ids IS NOT NULL THEN
        PERFORM pg_notify('warren_outcomes', w::text) FROM unnest(waited_ids) AS w;
    END IF;
END
$$;
