-- Back to migration 000016's function (its own SET clause only: CREATE OR REPLACE
-- replaces the function's settings with the ones it names).
CREATE OR REPLACE FUNCTION warren_complete_runs(
    task_ids BIGINT[],
    run_tokens BIGINT[],
    task_results TEXT[],
    runs_started BIGINT[],
    runs_finished BIGINT[]
) RETURNS void LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    done_ids BIGINT[];
    done_tokens BIGINT[];
    waited_ids BIGINT[];
    missing BIGINT;
BEGIN
    PERFORM warren_run_open();
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
    -- Each run by its task and token: a run whose token no longer holds its task.
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
    PERFORM pg_notify('warren_outcomes', w::text) FROM unnest(waited_ids) AS w;
END
$$;
