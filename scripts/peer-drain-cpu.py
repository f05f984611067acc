#!/usr/bin/env python3
"""CPU time per job of the peer's drain (graphile-worker), split like drain-cpu.py's.

    scripts/peer-drain-cpu.py PEER_FOLDER [CONFIG]      (CONFIG: A, B, C or D; default D)

PEER_FOLDER is the peer with its packages installed: the runtime bench makes one at
`<target>/warren-bench-graphile` the first time it runs the peer
(`WARREN_BENCH_GRAPHILE=/work/shared/bench/peers/graphile-worker`). The script creates
the database `warren_peer_cpu` (dropped first if it exists, and at the end), runs
`node bench.js CONFIG` on it, waits until the peer's drain of 20,000 jobs has begun
(3,000 done), and over a window of WINDOW seconds (default 1.5: the drain lasts about
3 s on a 2-core machine) reads the jobs done and the CPU time of the peer's process,
of every `postgres` process, and of the machine, each per job.

Why: the ratio of Warren's drain rate to the peer's says how far apart they are, not
where. Beside `scripts/drain-cpu.py`'s split of a Warren task, this tells whether the
database or the node process costs more per task than per job. Run both in the same
minutes, alternating: the machine's speed varies from minute to minute.
"""

import importlib.util
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("drain_cpu", os.path.join(HERE, "drain-cpu.py"))
drain_cpu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drain_cpu)

NAME = "warren_peer_cpu"
JOBS = 20000


def jobs_left():
    """Jobs in the peer's table; `None` when it cannot be read (not made yet)."""
    left = drain_cpu.psql(NAME, "SELECT count(*) FROM graphile_worker._private_jobs")
    return int(left) if left.isdigit() else None


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    folder, config = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "D"
    if config not in ("A", "B", "C", "D"):
        sys.exit(f"CONFIG is A, B, C or D, not {config!r}")
    if not os.path.isdir(os.path.join(folder, "node_modules", "graphile-worker")):
        sys.exit(f"{folder} has no node_modules/graphile-worker: run the runtime bench with the peer once")
    drain_cpu.psql("postgres", f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
    drain_cpu.psql("postgres", f"CREATE DATABASE {NAME}")
    server = drain_cpu.DATABASE.rsplit("/", 1)[0]
    peer = subprocess.Popen(
        ["node", "bench.js", config, "1"], cwd=folder, env=dict(os.environ, GW_CONN=f"{server}/{NAME}"),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        # The peer enqueues all its jobs before it starts its workers.
        queued, deadline = False, time.time() + 120
        while time.time() < deadline:
            left = jobs_left()
            queued |= left is not None and left >= JOBS - 1000
            if queued and left is not None and left < JOBS - 3000:
                break
            time.sleep(0.01)
        else:
            sys.exit("the peer's drain did not start within 2 minutes")
        window = float(os.environ.get("WINDOW", "1.5"))
        before = (time.time(), jobs_left(), drain_cpu.cpu_seconds(peer.pid),
                  drain_cpu.postgres_seconds(), drain_cpu.machine_busy_seconds())
        time.sleep(window)
        after = (time.time(), jobs_left(), drain_cpu.cpu_seconds(peer.pid),
                 drain_cpu.postgres_seconds(), drain_cpu.machine_busy_seconds())
        output = peer.communicate()[0]
    finally:
        peer.kill()
        drain_cpu.psql("postgres", f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
    n = before[1] - after[1]
    if after[1] == 0:
        sys.exit("the drain ended inside the window: give a shorter WINDOW")
    per_job = lambda i: 1e6 * (after[i] - before[i]) / n
    rate = [line for line in output.splitlines() if line.startswith("{")]
    print(
        f"graphile-worker {config}: {n} jobs in {after[0] - before[0]:.1f} s "
        f"({n / (after[0] - before[0]):.0f}/s): node {per_job(2):.0f} µs/job, "
        f"postgres {per_job(3):.0f} µs/job, machine busy {per_job(4):.0f} µs/job; "
        f"peer: {rate[-1] if rate else 'no result'}"
    )


if __name__ == "__main__":
    main()
