-- The checks of the statement that completes a run which wrote and commits it, in one
-- round trip (see src/store/pg_run_tx.rs). They raise rather than return, so that the
-- COMMIT sent after them in the same message never runs when they fail.

-- Raises unless the statement runs inside the run's own transaction: the run's BEGIN
-- set `warren.run` for that transaction only, so task SQL that ended it leaves the
-- setting empty.
CREATE FUNCTION warren_run_open() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('warren.run', true) IS DISTINCT FROM '1' THEN
        RAISE EXCEPTION 'warren: the run''s transaction ended before its completion';
    END IF;
END
$$;

-- Raises unless the fenced completion changed exactly one row (otherwise the run lost
-- its lease: cancelled, or claimed again). Sends the outcome's NOTIFY when someone
-- waits for the task.
CREATE FUNCTION warren_fenced_outcome(task_id BIGINT, changed BIGINT, waited BOOLEAN)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF changed <> 1 THEN
        RAISE EXCEPTION 'warren: task % is no longer leased to this run', task_id;
    END IF;
    IF waited THEN
        PERFORM pg_notify('warren_outcomes', task_id::text);
    END IF;
END
$$;
