ALTER TABLE warren_nodes DROP COLUMN runners;
