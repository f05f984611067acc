-- Warren's queue, scheduled-task state, node registry and settings (PostgreSQL).
-- Instants are milliseconds since the Unix epoch (UTC) in BIGINT columns, the same
-- representation as the SQLite schema, so both backends share one diesel schema.

CREATE TABLE warren_tasks (
    id                 BIGSERIAL PRIMARY KEY,
    task_type          VARCHAR(400) NOT NULL,
    cluster            TEXT NOT NULL DEFAULT 'default',
    state              TEXT NOT NULL DEFAULT 'pending'
                       CHECK (state IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
    data               TEXT NOT NULL,
    aux_data           TEXT,
    result             TEXT,
    last_error         TEXT,
    last_stack         TEXT,
    priority           INTEGER NOT NULL DEFAULT 0,
    timeout_ms         BIGINT NOT NULL DEFAULT 0,
    created_at         BIGINT NOT NULL,
    not_before         BIGINT,
    next_attempt       BIGINT NOT NULL,
    started_at         BIGINT,
    finished_at        BIGINT,
    failures           INTEGER NOT NULL DEFAULT 0,
    iterations         INTEGER NOT NULL DEFAULT 0,
    lease_owner        TEXT,
    lease_until        BIGINT,
    lease_token        BIGINT NOT NULL DEFAULT 0
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
    task_id   BIGINT NOT NULL REFERENCES warren_tasks (id) ON DELETE CASCADE,
    key_norm  TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (task_id, key_norm)
);

CREATE TABLE warren_scheduled (
    tag           TEXT PRIMARY KEY,
    mask          TEXT,
    zone          TEXT NOT NULL DEFAULT 'UTC',
    enabled       BOOLEAN NOT NULL DEFAULT TRUE,
    next_run      BIGINT,
    run_requested BOOLEAN NOT NULL DEFAULT FALSE,
    running       BOOLEAN NOT NULL DEFAULT FALSE,
    run_owner     TEXT,
    run_until     BIGINT,
    run_token     BIGINT NOT NULL DEFAULT 0,
    last_start    BIGINT,
    last_finish   BIGINT,
    last_outcome  TEXT,
    last_output   TEXT
);

CREATE TABLE warren_nodes (
    name          TEXT PRIMARY KEY,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    info          TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE warren_settings (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
