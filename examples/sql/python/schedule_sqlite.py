"""Schedules a Warren task from a Python application on SQLite, with the standard
library only, in the application's own transaction.

    python schedule_sqlite.py /path/to/warren.db 42

prints {"id": <task id>}. SQLite has no stored functions, so the task is one
documented INSERT (the README's "Scheduling from other languages"); after the commit,
a datagram to each process that has the file open (sockets in `<file>-wake/`) makes
their queues look at once instead of at their next one-second check.
"""

import json
import os
import socket
import sqlite3
import sys

NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"

SCHEDULE = f"""
INSERT INTO warren_tasks (task_type, cluster, state, data, priority, timeout_ms,
                          created_at, next_attempt)
VALUES (:type,
        coalesce((SELECT cluster FROM warren_task_types WHERE task_type = :type), 'default'),
        'pending', json(:data), :priority, 0, {NOW_MS}, {NOW_MS})
RETURNING id, cluster
"""


def wake(db_path: str, cluster: str) -> None:
    """Tells every Warren process with the file open that `cluster` has new work."""
    folder = db_path + "-wake"
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return  # no Warren process has the file open: the next one to start looks anyway
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for name in names:
            try:
                s.sendto(f"w {cluster}\n".encode(), os.path.join(folder, name))
            except OSError:
                pass  # a process that is gone or busy: its one-second check finds the task


def main(db_path: str, ping: int) -> int:
    conn = sqlite3.connect(db_path, timeout=10, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("CREATE TABLE IF NOT EXISTS demo_orders (id INTEGER PRIMARY KEY, ping INTEGER NOT NULL)")
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("INSERT INTO demo_orders (ping) VALUES (?)", (ping,))
        task_id, cluster = conn.execute(
            SCHEDULE, {"type": "demo:ping", "data": json.dumps({"ping": ping}), "priority": -100}
        ).fetchone()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    wake(db_path, cluster)
    print(json.dumps({"id": task_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
