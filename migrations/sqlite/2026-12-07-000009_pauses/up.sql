-- Paused clusters and task types (src/store/pauses.rs). The claim and the look for due
-- scheduled tags read this table in the same statement that takes work, so no node
-- starts paused work once a pause has committed.
CREATE TABLE warren_paused (
    kind TEXT NOT NULL CHECK (kind IN ('cluster', 'type')),
    name TEXT NOT NULL,
    paused_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);
