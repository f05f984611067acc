DROP FUNCTION warren_complete_runs(BIGINT[], BIGINT[], TEXT[], BIGINT[], BIGINT[]);
