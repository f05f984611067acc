-- Whether someone waits for this task's outcome (Store::wait sets it). On PostgreSQL a
-- resolution sends its NOTIFY only then: NOTIFY takes a database-wide lock at commit,
-- which every resolution would otherwise queue on.
ALTER TABLE warren_tasks ADD COLUMN waited BOOLEAN NOT NULL DEFAULT false;
