-- Unique tasks. A task scheduled with a unique key keeps it here (with the start of its
-- period appended after a U+001F separator when it was scheduled with a period), and
-- the states in which it counts as a duplicate as a bit set: pending 1, running 2,
-- completed 4, failed 8, cancelled 16 (pending and running are always set).
--
-- SQLite has one writer at a time, so scheduling looks for a duplicate in the same
-- statement that inserts, under the write lock (src/store/sqlite_dialect.rs), and this
-- index only makes that look fast. It is not unique over the states that count, as the
-- PostgreSQL one is: its condition would have to read `state`, and SQLite compiles the
-- upkeep of such an index into every claim and resolution, which change `state`.
ALTER TABLE warren_tasks ADD COLUMN unique_key TEXT;
ALTER TABLE warren_tasks ADD COLUMN unique_states INTEGER;
CREATE INDEX warren_tasks_unique_key ON warren_tasks (task_type, unique_key)
    WHERE unique_key IS NOT NULL;
