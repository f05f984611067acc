DROP TABLE warren_paused;
