#!/usr/bin/env bash
# What PostgreSQL alone can take of tasks that each insert one row, by how a group of
# them claims and sends its statements: a model in plain SQL (pgbench), without a node,
# to weigh changes to the run-group design (docs/state-machine.md) before building them.
#
#   scripts/group-sql-model.sh [ROUNDS]      (default 2 rounds)
#
# Each pgbench transaction is one group of GROUP tasks (default 16) on Warren's schema
# (the migrations in migrations/postgres, applied to a scratch database), CLIENTS
# clients at once (default 4), SECONDS_EACH seconds each (default 6), commits synced. Variants:
#   lease-savepoints  claim by lease (an UPDATE, as `Store::claim`), then BEGIN and per
#                     task SAVEPOINT, INSERT, RELEASE as three round trips, then the
#                     completions in one UPDATE and COMMIT;
#   lease-one-trip    the same with one round trip per task (the INSERT alone: Warren
#                     sends a task's savepoint in the same message as its statement);
#   lease-pipelined   the same with the group's inserts in one round trip;
#   lock-*            the same three, claiming by row lock in the group's transaction
#                     (SELECT … FOR NO KEY UPDATE SKIP LOCKED) instead of by lease.
# Each line: the variant and tasks/s. Between variants the tasks are made pending
# again and the table vacuumed. The database is dropped at the end.
# Needs pgbench and psql, and PostgreSQL at WARREN_BENCH_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres).
set -euo pipefail
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
rounds=${1:-2}
group=${GROUP:-16}
clients=${CLIENTS:-4}
seconds=${SECONDS_EACH:-6}
server=${WARREN_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db="warren_model_$$"
url="${server%/*}/$db"
repo="$(cd "$(dirname "$0")/.." && pwd)"
work=$(mktemp -d)
cleanup() {
  psql -q "$server" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql -q "$server" -c "CREATE DATABASE $db" >/dev/null
for migration in "$repo"/migrations/postgres/*/up.sql; do
  psql -q -v ON_ERROR_STOP=1 "$url" -f "$migration" >/dev/null
done
psql -q -v ON_ERROR_STOP=1 "$url" >/dev/null <<SQL
CREATE TABLE bench_effects (task_id BIGINT NOT NULL);
INSERT INTO warren_tasks (task_type, cluster, data, priority, timeout_ms, created_at, next_attempt)
SELECT 'model:insert', 'default', '{}', 0, 0, 1, g FROM generate_series(1, 400000) g;
VACUUM ANALYZE warren_tasks;
SQL

pending="state = 'pending' AND cluster = 'default' AND flow_key IS NULL"
order="ORDER BY priority, next_attempt, id LIMIT $group FOR NO KEY UPDATE SKIP LOCKED"
claim_by_lease="UPDATE warren_tasks SET state = 'running', lease_owner = 'model', \
lease_until = 5000000000000, lease_token = lease_token + 1, started_at = 3 \
WHERE id = ANY(ARRAY(SELECT id FROM warren_tasks WHERE $pending $order));"
complete_leased="UPDATE warren_tasks SET state = 'completed', finished_at = 5, result = '{}', \
lease_owner = NULL, lease_until = NULL, iterations = iterations + 1 \
WHERE id = ANY(ARRAY(SELECT id FROM warren_tasks WHERE lease_until IS NOT NULL \
AND lease_owner = 'model' ORDER BY lease_until LIMIT $group FOR NO KEY UPDATE SKIP LOCKED));"
lock_pending="SELECT id FROM warren_tasks WHERE $pending $order;"
# The rows this transaction locked come first again: SKIP LOCKED skips only others'.
complete_locked="UPDATE warren_tasks SET state = 'completed', finished_at = 5, result = '{}', \
iterations = iterations + 1 WHERE id = ANY(ARRAY(SELECT id FROM warren_tasks WHERE $pending $order));"

# The group's inserts: $1 = savepoints (three round trips a task), one (a round trip
# a task) or pipelined (one for the group).
inserts() {
  case $1 in
    savepoints)
      for i in $(seq "$group"); do
        printf 'SAVEPOINT warren_task;\nINSERT INTO bench_effects VALUES (%d);\nRELEASE SAVEPOINT warren_task;\n' "$i"
      done
      ;;
    one)
      for i in $(seq "$group"); do
        printf 'INSERT INTO bench_effects VALUES (%d);\n' "$i"
      done
      ;;
    pipelined)
      printf 'INSERT INTO bench_effects SELECT g FROM generate_series(1, %d) g;\n' "$group"
      ;;
  esac
}

variants=()
for sends in savepoints one pipelined; do
  name=$sends
  [ "$sends" = one ] && name=one-trip
  { echo "$claim_by_lease"; echo "BEGIN;"; inserts "$sends"; echo "$complete_leased"; echo "COMMIT;"; } \
    > "$work/lease-$name.sql"
  { echo "BEGIN;"; echo "$lock_pending"; inserts "$sends"; echo "$complete_locked"; echo "COMMIT;"; } \
    > "$work/lock-$name.sql"
  variants+=("lease-$name" "lock-$name")
done

for round in $(seq "$rounds"); do
  for variant in "${variants[@]}"; do
    psql -q "$url" >/dev/null <<SQL
UPDATE warren_tasks SET state = 'pending', lease_owner = NULL, lease_until = NULL,
  finished_at = NULL WHERE state <> 'pending';
TRUNCATE bench_effects;
VACUUM warren_tasks;
CHECKPOINT;
SQL
    tps=$(pgbench -n -c "$clients" -T "$seconds" -M prepared -f "$work/$variant.sql" "$url" 2>&1 \
      | awk '/^tps = / { print $3 }')
    awk -v v="$variant" -v r="$round" -v t="$tps" -v g="$group" \
      'BEGIN { printf "round %d  %-18s %8.0f tasks/s\n", r, v, t * g }'
  done
done
