-- The cluster each task type runs in, as the loaded module definitions declare it.
-- Nodes register it at start; a task scheduled without a cluster (from the command
-- line, the API, another process) gets its type's cluster from here.
CREATE TABLE warren_task_types (
    task_type TEXT PRIMARY KEY,
    cluster TEXT NOT NULL
);
