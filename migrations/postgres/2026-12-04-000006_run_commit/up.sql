-- What completes a run that wrote and commits it in one round trip (see
-- src/store/pg_run_tx.rs). The checks raise rather than return, so that the COMMIT sent
-- after them in the same message never runs when they fail. As functions, their
-- statements are planned once per connection rather than at every completion.

-- Raises unless it runs inside the run's own transaction: the run's BEGIN set
-- `warren.run` for that transaction only, so task SQL that ended it leaves it empty.
CREATE FUNCTION warren_run_open() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('warren.run', true) IS DISTINCT FROM '1' THEN
        RAISE EXCEPTION 'warren: the run''s transaction ended before its end was written';
    END IF;
END
$$;

-- Completes a running task fenced by the run's lease token, in the run's transaction:
-- raises when that transaction is no longer open or the run lost its lease (the task
-- was cancelled or claimed again), and sends the outcome's NOTIFY when someone waits.
CREATE FUNCTION warren_complete_run(
    task_id BIGINT,
    run_token BIGINT,
    task_result TEXT,
    run_started BIGINT,
    run_finished BIGINT
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    was_waited BOOLEAN;
BEGIN
    PERFORM warren_run_open();
    UPDATE warren_tasks
    SET state = 'completed', finished_at = run_finished, result = task_result,
        last_error = NULL, last_stack = NULL, lease_owner = NULL, lease_until = NULL,
        iterations = iterations + 1, started_at = run_started
    WHERE id = task_id AND lease_token = run_token AND state = 'running'
    RETURNING waited INTO was_waited;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'warren: task % is no longer leased to this run', task_id;
    END IF;
    IF was_waited THEN
        PERFORM pg_notify('warren_outcomes', task_id::text);
    END IF;
END
$$;
