-- Warren's queue, scheduled-task state, node registry and settings (SQLite).
-- Instants are milliseconds since the Unix epoch (UTC) in INTEGER columns, the same
-- representation as the SQLite schema, so both backends share one diesel schema.

CREATE TABLE warren_tasks (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    task_type          TEXT NOT NULL,
    cluster            TEXT NOT NULL DEFAULT 'default',
    state              TEXT NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    data               TEXT NOT NULL,
    aux_data           TEXT,
    result             TEXT,
    last_error         TEXT,
    last_stack         TEXT,
    priority           INTEGER NOT NULL DEFAULT 0,
    timeout_ms         INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    not_before         INTEGER,
    next_attempt       INTEGER NOT NULL,
    started_at         INTEGER,
    finished_at        INTEGER,
    failures           INTEGER NOT NULL DEFAULT 0,
    iterations         INTEGER NOT NULL DEFAULT 0,
    lease_owner        TEXT,
    lease_until        INTEGER,
    lease_token        INTEGER NOT NULL DEFAULT 0
);

-- The claim query: due pending tasks of a cluster in (priority, next_attempt, id) order.
CREATE INDEX warren_tasks_due ON warren_tasks (cluster, priority, next_attempt, id)
    WHERE state = 'pending';
-- Recovery of expired leases.
CREATE INDEX warren_tasks_leases ON warren_tasks (lease_until) WHERE state = 'running';
-- Pruning and listing of finished tasks.
CREATE INDEX warren_tasks_finished ON warren_tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX warren_tasks_type ON warren_tasks (task_type, id);

CREATE TABLE warren_task_metadata (
    task_id   INTEGER NOT NULL REFERENCES warren_tasks (id) ON DELETE CASCADE,
    key_norm  TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (task_id, key_norm)
);

CREATE TABLE warren_scheduled (
    tag           TEXT PRIMARY KEY,
    mask          TEXT,
    zone          TEXT NOT NULL DEFAULT 'UTC',
    enabled       BOOLEAN NOT NULL DEFAULT 1,
    next_run      INTEGER,
    run_requested BOOLEAN NOT NULL DEFAULT 0,
    running       BOOLEAN NOT NULL DEFAULT 0,
    run_owner     TEXT,
    run_until     INTEGER,
    run_token     INTEGER NOT NULL DEFAULT 0,
    last_start    INTEGER,
    last_finish   INTEGER,
    last_outcome  TEXT,
    last_output   TEXT
);

CREATE TABLE warren_nodes (
    name          TEXT PRIMARY KEY,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    info          TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE warren_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
