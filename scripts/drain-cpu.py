#!/usr/bin/env python3
"""CPU time per task of a 16-runner drain, split between the node and PostgreSQL.

    scripts/drain-cpu.py BENCH_BINARY [TASKS]      (default 150,000 tasks)

BENCH_BINARY is a built `runtime` bench (`cargo bench --bench runtime --no-run` prints
where it is). The script runs its 16-runner drain alone on PostgreSQL
(WARREN_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres), waits
until 2,000 tasks have completed, and then, over a window of WINDOW seconds (default
5), reads:
- the tasks completed (from the bench's database);
- the CPU time of the bench process and of every `postgres` process (/proc);
- the machine's busy time (/proc/stat);
- the context switches of the node's threads, voluntary (`.v`: the thread slept) and
  not (`.nv`: it was preempted), by thread kind (`runner` for the runners' threads);
- the WAL bytes the server wrote (its WAL position, so vacuum's share too);
- the transactions committed in the bench's database.
Each is printed per task, with the bench's own drain rate.

Why: on a small, shared machine the drain rate of one run varies by 10-20%, so two
builds are hard to tell apart by their rates. The CPU a task costs varies much less,
and says where it goes. Compare two builds in alternating runs, both orders. The WAL
written per task does not depend on how fast the machine runs: a change to what the
database writes (statements, indexes) shows in it in a single run (repeat runs of one
build read within 2% of each other).
The commits per task come from PostgreSQL's per-database counter, which each backend
publishes about once a second (an idle one up to ten seconds late): over a window of
seconds it reads up to 20% apart from run to run, so it tells one commit per task from
one per group of runs (see docs/state-machine.md), not finer changes.

PROFILE=FILE records a profile of the whole machine over the window with `perf record -a`
(samples at 999 Hz, no call graphs: the bench is built without frame pointers) into
FILE; read it with `perf report -i FILE --sort comm,dso,sym`. Sampling slows the drain
(about 10% on a 2-core virtual machine), so figures from a profiled run are not compared
with others. With PROFILE the bench's engine writes a perf map (`WARREN_BENCH_PERF_MAP`),
so guest code shows by function (the toolkit's QuickJS functions are unnamed in its
build: `wasm[2]::function[N]`), not as `[JIT]` addresses.

DRAIN=insert or DRAIN=log drains those tasks instead of no-op ones. SCHEMA_SQL, when
set, is run on the bench's database as soon as the backlog's first tasks are in it (so
after the migrations), before the window: a schema variant (an index dropped or added)
measured without a rebuild.
"""

import glob
import os
import subprocess
import sys
import time

DATABASE = os.environ.get(
    "WARREN_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"
)
TICK = os.sysconf("SC_CLK_TCK")


def psql(database, query):
    server = DATABASE.rsplit("/", 1)[0]
    done = subprocess.run(
        ["psql", f"{server}/{database}", "-Atc", query], capture_output=True, text=True
    )
    return done.stdout.strip()


def cpu_seconds(pid):
    """User and system CPU seconds of a process; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def postgres_seconds():
    total = 0.0
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            with open(proc + "/comm") as f:
                if f.read().strip() == "postgres":
                    total += cpu_seconds(proc[len("/proc/"):])
        except OSError:
            pass
    return total


def machine_busy_seconds():
    with open("/proc/stat") as f:
        ticks = list(map(int, f.readline().split()[1:]))
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK


def switches(pid):
    """Context switches of the process's threads, by thread kind."""
    counts = {}
    for thread in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(thread + "/comm") as f:
                name = f.read().strip()
            with open(thread + "/status") as f:
                status = f.read().splitlines()
        except OSError:
            continue
        kind = "runner" if name.startswith("actix-rt") else name
        for line in status:
            for key, suffix in (("voluntary_ctxt", ".v"), ("nonvoluntary_ctxt", ".nv")):
                if line.startswith(key):
                    counts[kind + suffix] = counts.get(kind + suffix, 0) + int(line.split()[1])
    return counts


def wal_position(database):
    """The server's WAL position in bytes; `None` when it cannot be read."""
    position = psql(database, "SELECT pg_current_wal_lsn() - '0/0'")
    try:
        return float(position)
    except ValueError:
        return None


def commits(database):
    """Transactions committed in the database so far, as PostgreSQL's statistics count
    them (each backend reports within a second, so a window's count is close, not
    exact); `None` when it cannot be read."""
    count = psql(database, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    return int(count) if count.isdigit() else None


def completed(database):
    """Tasks completed so far; `None` once the bench has dropped its database."""
    count = psql(database, "SELECT count(*) FROM warren_tasks WHERE state = 'completed'")
    return int(count) if count.isdigit() else None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary, tasks = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "150000"
    env = dict(
        os.environ,
        WARREN_BENCH_DATABASE_URL=DATABASE,
        WARREN_BENCH_BACKENDS="postgres",
        WARREN_BENCH_NODES="16",
        WARREN_BENCH_DRAINS=os.environ.get("DRAIN", "ping"),
        WARREN_BENCH_DRAIN_TASKS=tasks,
        WARREN_BENCH_GRAPHILE="/nonexistent",
    )
    if os.environ.get("PROFILE"):
        env["WARREN_BENCH_PERF_MAP"] = "1"
    bench = subprocess.Popen(
        [binary, "--bench"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    database = None
    schema_sql = os.environ.get("SCHEMA_SQL")
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.1)
        names = psql("postgres", "SELECT datname FROM pg_database WHERE datname LIKE 'warren_rt_%'")
        ours = [n for n in names.split() if n.startswith(f"warren_rt_{bench.pid}")]
        if ours and schema_sql and psql(ours[0], "SELECT EXISTS (SELECT 1 FROM warren_tasks)") == "t":
            server = DATABASE.rsplit("/", 1)[0]
            subprocess.run(["psql", f"{server}/{ours[0]}", "-qAtc", schema_sql], check=True)
            schema_sql = None
        if ours and (completed(ours[0]) or 0) > 2000:
            database = ours[0]
            break
    if database is None:
        bench.kill()
        sys.exit("the drain did not start within 2 minutes (is the binary the runtime bench?)")
    if schema_sql is not None:
        bench.kill()
        sys.exit("SCHEMA_SQL was not run: the drain started before its backlog was seen")
    window = float(os.environ.get("WINDOW", "5"))
    wal_before, commits_before = wal_position(database), commits(database)
    before = (time.time(), completed(database), cpu_seconds(bench.pid), postgres_seconds(),
              machine_busy_seconds(), switches(bench.pid))
    profile = os.environ.get("PROFILE")
    if profile:
        subprocess.run(["perf", "record", "-q", "-a", "-F", "999", "-o", profile, "--",
                        "sleep", str(window)], check=True, stderr=subprocess.DEVNULL)
    else:
        time.sleep(window)
    after = (time.time(), completed(database), cpu_seconds(bench.pid), postgres_seconds(),
             machine_busy_seconds(), switches(bench.pid))
    wal_after, commits_after = wal_position(database), commits(database)
    output = bench.communicate()[0]
    if after[1] is None:
        sys.exit("the drain ended inside the window: give more TASKS")
    n = after[1] - before[1]
    if n <= 0:
        sys.exit("no task completed in the window")
    per_task = lambda i: 1e6 * (after[i] - before[i]) / n
    per_switch = {k: round((after[5][k] - before[5].get(k, 0)) / n, 2) for k in sorted(after[5])}
    rate = [line for line in output.splitlines() if line.startswith("{")]
    wal = "not read" if None in (wal_before, wal_after) else f"{(wal_after - wal_before) / n:.0f}"
    xacts = "not read" if None in (commits_before, commits_after) else \
        f"{(commits_after - commits_before) / n:.2f}"
    print(
        f"{n} tasks in {after[0] - before[0]:.1f} s ({n / (after[0] - before[0]):.0f}/s): "
        f"node {per_task(2):.0f} µs/task, postgres {per_task(3):.0f} µs/task, "
        f"machine busy {per_task(4):.0f} µs/task; switches/task {per_switch}; "
        f"WAL {wal} B/task; commits/task {xacts}; bench: {rate[-1] if rate else 'no result'}"
    )


if __name__ == "__main__":
    main()
