-- Rate limits (src/rate_limit.rs, src/store/rate_limit.rs). A task type may start at
-- most `rate_count` tasks per `rate_period_ms` across all nodes, in bursts of up to
-- `rate_burst`, per value of its key field or in all. A type with a rate limit keys its
-- tasks like one with a concurrency limit, and a type with both keys them by one field:
-- `concurrency_key` holds the key field of both rules (it keeps its name, so nodes of
-- the version before, still running during an upgrade, go on reading the registry).
ALTER TABLE warren_task_types ADD COLUMN rate_count INTEGER CHECK (rate_count > 0);
ALTER TABLE warren_task_types ADD COLUMN rate_period_ms BIGINT CHECK (rate_period_ms > 0);
ALTER TABLE warren_task_types ADD COLUMN rate_burst INTEGER CHECK (rate_burst > 0);
ALTER TABLE warren_task_types ADD CONSTRAINT warren_task_types_rate_whole
    CHECK ((rate_count IS NULL) = (rate_period_ms IS NULL)
       AND (rate_count IS NULL) = (rate_burst IS NULL));

-- One bucket per (type, key) that has started tasks: its theoretical arrival time in
-- nanoseconds since the epoch (src/rate_limit.rs). A bucket whose time has passed is
-- full, as if it had no row; the claim writes it, under its cluster's lock.
CREATE TABLE warren_rate_buckets (
    task_type TEXT NOT NULL,
    flow_key TEXT NOT NULL,
    tat BIGINT NOT NULL,
    PRIMARY KEY (task_type, flow_key)
);
