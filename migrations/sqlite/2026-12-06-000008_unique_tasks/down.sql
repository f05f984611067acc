DROP INDEX warren_tasks_unique_key;
ALTER TABLE warren_tasks DROP COLUMN unique_states;
ALTER TABLE warren_tasks DROP COLUMN unique_key;
