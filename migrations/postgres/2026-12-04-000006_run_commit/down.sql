DROP FUNCTION warren_fenced_outcome(BIGINT, BIGINT, BOOLEAN);
DROP FUNCTION warren_run_open();
