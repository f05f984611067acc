-- What each node's runners are doing, published with its heartbeat (a JSON array), so
-- the dashboard of any node can show the runners of all of them.
ALTER TABLE warren_nodes ADD COLUMN runners TEXT NOT NULL DEFAULT '[]';
