-- Unique tasks. A task scheduled with a unique key keeps it here (with the start of its
-- period appended after a U+001F separator when it was scheduled with a period), and
-- the states in which it counts as a duplicate as a bit set: pending 1, running 2,
-- completed 4, failed 8, cancelled 16 (pending and running are always set). The index
-- holds only the tasks that count right now, so scheduling a second task of the same
-- type and key fails to insert while the first counts, whichever node or transaction
-- tries. src/store/unique.rs repeats this condition (COUNTS_AS_DUPLICATE) word for word.
ALTER TABLE warren_tasks ADD COLUMN unique_key TEXT;
ALTER TABLE warren_tasks ADD COLUMN unique_states INTEGER;
CREATE UNIQUE INDEX warren_tasks_unique_key ON warren_tasks (task_type, unique_key)
    WHERE unique_key IS NOT NULL AND (unique_states & CASE state WHEN 'pending' THEN 1 WHEN 'running' THEN 2 WHEN 'completed' THEN 4 WHEN 'failed' THEN 8 WHEN 'cancelled' THEN 16 ELSE 0 END) <> 0;
