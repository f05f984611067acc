DROP FUNCTION warren_schedule(TEXT, JSONB, JSONB);
DROP FUNCTION warren_schedule_error(TEXT, TEXT);
DROP FUNCTION warren_schedule_trim(TEXT);
DROP FUNCTION warren_schedule_key_norm(TEXT);
