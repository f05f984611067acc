DROP FUNCTION warren_complete_run(BIGINT, BIGINT, TEXT, BIGINT, BIGINT);
DROP FUNCTION warren_run_open();
