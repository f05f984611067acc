DROP FUNCTION warren_schedule(TEXT, JSONB, JSONB);
DROP FUNCTION warren_schedule_error(TEXT, TEXT);
