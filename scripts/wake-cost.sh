#!/usr/bin/env bash
# How much of a latency is the cost of waking a sleeping thread on another CPU, and
# how much of it the nodes' idle spin (`actors/src/idle_spin.rs`) takes back: runs
# the runtime bench's 4-runner part (managed throughput, commit to start, ephemeral
# round trip) in three set-ups, alternating, ROUNDS times each.
#
#   scripts/wake-cost.sh BENCH_BINARY [ROUNDS]      (default 3 rounds)
#
# BENCH_BINARY is a built `runtime` bench (`cargo bench --bench runtime --no-run`
# prints where it is). Set-ups:
#   nospin  no idle spin; the kernel places every thread: each of an ephemeral call's
#           two wake-ups (queue to runner, runner to queue) interrupts another CPU;
#   pinned  no idle spin; the runners' threads pinned one per CPU in turn and the
#           node's own thread (the queue, the bench's caller) to CPU 0 beside the
#           first runners' thread, once the node has started them: the wake-ups stay
#           on one CPU (a measurement only: it costs the drains' throughput);
#   spin    the default idle spin; the kernel places every thread.
# Each line: managed tasks/s with 4 runners, commit to start p50 (µs), ephemeral
# round trip p50 and p99 (µs), ephemeral calls/s with 4 callers. PART=drains runs the
# 16-runner drains instead.
# Needs 2 or more CPUs, `taskset`, and PostgreSQL at WARREN_BENCH_DATABASE_URL
# (default postgres://postgres@127.0.0.1:5432/postgres); WARREN_BENCH_BACKENDS=sqlite
# measures SQLite instead.
set -euo pipefail
if [ $# -lt 1 ]; then
  sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
bench=$1
rounds=${2:-3}
cpus=$(nproc)
if [ "$cpus" -lt 2 ]; then
  echo "wake-cost: one CPU only: nothing to compare" >&2
  exit 2
fi
export WARREN_BENCH_DATABASE_URL=${WARREN_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export WARREN_BENCH_BACKENDS=${WARREN_BENCH_BACKENDS:-postgres} WARREN_BENCH_GRAPHILE=/nonexistent
if [ "${PART:-latency}" = drains ]; then
  export WARREN_BENCH_NODES=16 WARREN_BENCH_DRAIN_TASKS=${WARREN_BENCH_DRAIN_TASKS:-20000}
  runners=16
  pattern='drain'
else
  # Enough managed tasks that the runners' threads exist well before the
  # latencies are measured.
  export WARREN_BENCH_NODES=4 WARREN_BENCH_TASKS=${WARREN_BENCH_TASKS:-8000}
  runners=4
  pattern='4 runner|commit to start p50|ephemeral'
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# A node starts one runners' thread per CPU, never more than its runners.
expected=$((cpus < runners ? cpus : runners))

# The runners' threads are actix arbiters, named `actix-rt|system:0|arbiter:N`
# (cut to `actix-rt|system` in /proc); the node's own thread is the main thread.
runner_threads() {
  grep -l '^actix-rt|system' /proc/"$1"/task/*/comm 2>/dev/null | xargs -r -n1 dirname | xargs -r -n1 basename
}

run() {
  local setup=$1 pinned=0
  if [ "$setup" = spin ]; then
    env -u WARREN_BENCH_IDLE_SPIN_US "$bench" --bench >"$out" 2>/dev/null &
  else
    WARREN_BENCH_IDLE_SPIN_US=0 "$bench" --bench >"$out" 2>/dev/null &
  fi
  local pid=$!
  if [ "$setup" = pinned ]; then
    for _ in $(seq 1 200); do
      [ "$(runner_threads "$pid" | wc -l)" -ge "$expected" ] && break
      sleep 0.05
    done
    local k=0
    for tid in $(runner_threads "$pid"); do
      taskset -p -c $((k % cpus)) "$tid" >/dev/null
      k=$((k + 1))
    done
    taskset -p -c 0 "$pid" >/dev/null
    pinned=$k
  fi
  wait "$pid"
  printf '%-7s' "$setup"
  grep -v '^{' "$out" | grep -E "$pattern" | awk '{printf "  %s %s", $(NF-1), $NF}'
  if [ "$setup" = pinned ]; then printf '  (%d runner threads pinned)' "$pinned"; fi
  echo
}

for _ in $(seq 1 "$rounds"); do
  run nospin
  run pinned
  run spin
done
