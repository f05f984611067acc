#!/usr/bin/env bash
# What group commit of runs that write could gain, measured on the database alone
# (issue 13): pgbench plays the part of the runners, so nothing of Warren's client side
# counts. Each "task" inserts one row into a table of its own and then changes its task
# row the way a completion does (state, finish time, result, lease; not a HOT update),
# on Warren's real schema (the migrations are applied to a fresh database).
#
#   scripts/group-commit-ceiling.sh [SECONDS]      (default 10 s per figure)
#
# Six ways to commit, each at several numbers of tasks in flight:
#   solo        one transaction per task, as runs commit today: BEGIN and the insert in
#               one round trip, the completion and COMMIT in the next;
#   runner      each connection (a runner) runs GROUP tasks one after another in one
#               transaction, each task in a savepoint of its own: its statement goes
#               with the savepoint, its completion with the release (two round trips
#               per task as solo, one commit per GROUP tasks). Nothing interleaves, so a
#               task whose statement fails, whose lease is lost or that is killed rolls
#               back to its own savepoint and the others keep their work;
#   runner+     the same, with each task's completion and release sent in the message
#               that carries the next task's savepoint and statement (one round trip
#               per task, and one for the last completion with COMMIT);
#   held        the same, with no completion per task: each task's message releases
#               the previous task's savepoint and sets its own, and the group's
#               completions go in one UPDATE sent with COMMIT (one round trip per task,
#               one for the group's completions and commit: what Warren's run groups
#               do, src/store/run_group.rs);
#   serialized  groups of GROUP tasks sharing one transaction, each task's work in a
#               savepoint of its own, one task after another on the group's connection
#               (what a group needs so that a failing member is undone alone);
#   pipelined   groups of GROUP tasks sharing one transaction with no savepoints, all
#               their inserts in one round trip and all completions with COMMIT in the
#               next (the most a group could gain; a failing member would fail them all).
# "in flight" is the number of tasks in progress at once: the number of connections for
# solo and the runner groups, GROUP times that for the others. A node with 16 runners
# has at most 16 in flight.
#
# Environment: PGHOST (127.0.0.1), PGPORT (5432), PGUSER (postgres), GROUP (8),
# IN_FLIGHT ("16 32 64"), DB (warren_group_commit_ceiling; dropped and made afresh).
set -euo pipefail
seconds=${1:-10}
export PGOPTIONS="-c client_min_messages=warning" PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
group=${GROUP:-8}
in_flight=${IN_FLIGHT:-16 32 64}
db=${DB:-warren_group_commit_ceiling}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tasks=200000

psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
for up in "$repo"/migrations/postgres/*/up.sql; do
  psql -qX -v ON_ERROR_STOP=1 -d "$db" -f "$up" >/dev/null
done
psql -qX -v ON_ERROR_STOP=1 -d "$db" <<SQL
INSERT INTO warren_tasks (task_type, state, data, created_at, next_attempt,
                          lease_owner, lease_until, lease_token)
SELECT 'bench:write', 'running', '{}', 0, 0, 'node', 1, g FROM generate_series(1, $tasks) g;
CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, task BIGINT NOT NULL);
VACUUM ANALYZE;
SQL

# A completion's write: the task leaves 'running' (or, the next time it is drawn, comes
# back to it), so every update changes indexed columns as a real completion does.
complete() {
  echo "UPDATE warren_tasks SET state = CASE state WHEN 'running' THEN 'completed' ELSE 'running' END, \
finished_at = :id$1, result = '{}', lease_owner = NULL, \
lease_until = CASE WHEN lease_until IS NULL THEN 1 ELSE NULL END, iterations = iterations + 1 \
WHERE id = :id$1;"
}
{
  echo "\\set id random(1, $tasks)"
  echo "\\startpipeline"
  echo "BEGIN;"
  echo "SET LOCAL warren.run = '1';"
  echo "INSERT INTO effects (task) VALUES (:id);"
  echo "\\endpipeline"
  echo "\\startpipeline"
  complete ""
  echo "COMMIT;"
  echo "\\endpipeline"
} >"$work/solo.sql"
{
  echo "BEGIN;"
  echo "SET LOCAL warren.run = '1';"
  for m in $(seq 1 "$group"); do
    echo "\\set id$m random(1, $tasks)"
    echo "\\startpipeline"
    echo "SAVEPOINT member;"
    echo "INSERT INTO effects (task) VALUES (:id$m);"
    echo "\\endpipeline"
    echo "\\startpipeline"
    complete "$m"
    echo "RELEASE SAVEPOINT member;"
    echo "\\endpipeline"
  done
  echo "COMMIT;"
} >"$work/serialized.sql"
{
  for m in $(seq 1 "$group"); do echo "\\set id$m random(1, $tasks)"; done
  echo "\\startpipeline"
  echo "BEGIN;"
  echo "SET LOCAL warren.run = '1';"
  for m in $(seq 1 "$group"); do echo "INSERT INTO effects (task) VALUES (:id$m);"; done
  echo "\\endpipeline"
  echo "\\startpipeline"
  for m in $(seq 1 "$group"); do complete "$m"; done
  echo "COMMIT;"
  echo "\\endpipeline"
} >"$work/pipelined.sql"
{
  for m in $(seq 1 "$group"); do echo "\\set id$m random(1, $tasks)"; done
  for m in $(seq 1 "$group"); do
    echo "\\startpipeline"
    [ "$m" = 1 ] && { echo "BEGIN;"; echo "SET LOCAL warren.run = '1';"; }
    echo "SAVEPOINT task;"
    echo "INSERT INTO effects (task) VALUES (:id$m);"
    echo "\\endpipeline"
    echo "\\startpipeline"
    complete "$m"
    echo "RELEASE SAVEPOINT task;"
    [ "$m" = "$group" ] && echo "COMMIT;"
    echo "\\endpipeline"
  done
} >"$work/runner.sql"
{
  for m in $(seq 1 "$group"); do echo "\\set id$m random(1, $tasks)"; done
  for m in $(seq 1 "$group"); do
    echo "\\startpipeline"
    if [ "$m" = 1 ]; then
      echo "BEGIN;"
      echo "SET LOCAL warren.run = '1';"
    else
      complete $((m - 1))
      echo "RELEASE SAVEPOINT task;"
    fi
    echo "SAVEPOINT task;"
    echo "INSERT INTO effects (task) VALUES (:id$m);"
    echo "\\endpipeline"
  done
  echo "\\startpipeline"
  complete "$group"
  echo "COMMIT;"
  echo "\\endpipeline"
} >"$work/runner_plus.sql"

{
  for m in $(seq 1 "$group"); do echo "\\set id$m random(1, $tasks)"; done
  for m in $(seq 1 "$group"); do
    echo "\\startpipeline"
    if [ "$m" = 1 ]; then
      echo "BEGIN;"
      echo "SET LOCAL warren.run = '1';"
    else
      echo "RELEASE SAVEPOINT task;"
    fi
    echo "SAVEPOINT task;"
    echo "INSERT INTO effects (task) VALUES (:id$m);"
    echo "\\endpipeline"
  done
  ids=$(for m in $(seq 1 "$group"); do printf ':id%s,' "$m"; done)
  echo "\\startpipeline"
  echo "UPDATE warren_tasks SET state = CASE state WHEN 'running' THEN 'completed' ELSE 'running' END, \
finished_at = 5, result = '{}', lease_owner = NULL, \
lease_until = CASE WHEN lease_until IS NULL THEN 1 ELSE NULL END, iterations = iterations + 1 \
WHERE id IN (${ids%,});"
  echo "COMMIT;"
  echo "\\endpipeline"
} >"$work/held.sql"

# Tasks per second of one script with `clients` connections, each transaction being
# `per` tasks.
rate() {
  local script=$1 clients=$2 per=$3 tps
  tps=$(pgbench -n -M prepared -c "$clients" -j 2 -T "$seconds" -f "$work/$script.sql" "$db" 2>/dev/null |
    awk '/^tps/ {print $3}')
  awk -v t="$tps" -v p="$per" 'BEGIN {printf "%.0f", t * p}'
}

# "rate (ratio to solo)".
versus() {
  echo "$1 ($(awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}')x)"
}

printf '%-9s | %-8s | %-18s | %-18s | %-18s | %-22s | %-22s\n' "in flight" solo "runner groups of $group" \
  "runner+ groups of $group" "held groups of $group" "serialized groups of $group" "pipelined groups of $group"
for n in $in_flight; do
  groups=$(( n / group ))
  [ "$groups" -lt 1 ] && groups=1
  solo=$(rate solo "$n" 1)
  runner=$(rate runner "$n" "$group")
  runner_plus=$(rate runner_plus "$n" "$group")
  held=$(rate held "$n" "$group")
  serialized=$(rate serialized "$groups" "$group")
  pipelined=$(rate pipelined "$groups" "$group")
  printf '%-9s | %-8s | %-18s | %-18s | %-18s | %-22s | %-22s\n' "$n" "$solo" "$(versus "$runner" "$solo")" \
    "$(versus "$runner_plus" "$solo")" "$(versus "$held" "$solo")" "$(versus "$serialized" "$solo")" \
    "$(versus "$pipelined" "$solo")"
done
psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db"
