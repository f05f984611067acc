ALTER TABLE warren_tasks DROP COLUMN waited;
