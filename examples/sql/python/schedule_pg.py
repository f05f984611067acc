"""Schedules a Warren task from a Python application on PostgreSQL, in the
application's own transaction: the order row and its task commit together, or neither
exists.

    python schedule_pg.py postgres://postgres@127.0.0.1/app 42

prints {"id": <task id>}. Needs psycopg 3 (requirements.txt) and a database migrated by
Warren (`warren migrate`), with a `demo_orders` table it creates if missing.
"""

import json
import sys

import psycopg
from psycopg.types.json import Jsonb


def main(url: str, ping: int) -> int:
    with psycopg.connect(url) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS demo_orders (id BIGSERIAL PRIMARY KEY, ping BIGINT NOT NULL)"
        )
        conn.commit()
        with conn.transaction():
            conn.execute("INSERT INTO demo_orders (ping) VALUES (%s)", (ping,))
            (task_id,) = conn.execute(
                "SELECT warren_schedule(%s, %s, %s)",
                ("demo:ping", Jsonb({"ping": ping}), Jsonb({"priority": "interactive"})),
            ).fetchone()
        # Bad input is refused with SQLSTATE 22023 and a message naming the field.
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT warren_schedule(%s, %s, %s)",
                    ("demo:ping", Jsonb({"ping": ping}), Jsonb({"priority": "soon"})),
                )
        except psycopg.errors.InvalidParameterValue as e:
            print(f"refused as expected: {e}", file=sys.stderr)
    print(json.dumps({"id": task_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
