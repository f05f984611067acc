#!/usr/bin/env python3
"""Compares interleaved benchmark runs written by scripts/bench-interleaved.sh.

Usage: bench_compare.py RUNS_DIR PAIRS BENCH...

Reads RUNS_DIR/{base,new}-BENCH-PAIR.jsonl and prints, for each figure, the ratio of
new to base in every pair, oriented so that above 1 means new is better (throughputs
new/base, times base/new), and the median of those ratios. Exits 1 when a median is
below 0.95, the threshold the refactor issue sets.
"""

import json
import statistics
import sys
from pathlib import Path

THRESHOLD = 0.95


def figures(line: dict) -> dict:
    """The (name, value, higher_is_better) figures of one JSON line of any bench."""
    out = {}
    if "tasks_per_s" in line:  # store bench
        key = f"store {line['backend']} {line['measurement']} tasks/s"
        out[key] = (line["tasks_per_s"], True)
    elif "median_us" in line:  # vm bench, a timing
        for stat in ("median_us", "p99_us"):
            out[f"vm {line['measurement']} {stat}"] = (line[stat], False)
    elif "ratio" in line:  # vm bench, a derived ratio: recomputed from timings above
        pass
    elif "unit" in line:  # runtime bench
        unit = line["unit"]
        higher = "/s" in unit or unit == "x"
        key = f"runtime {line['backend']} {line['measurement']} {unit}"
        out[key] = (line["value"], higher)
    return out


def load(path: Path) -> dict:
    result = {}
    for text in path.read_text().splitlines():
        text = text.strip()
        if text.startswith("{"):
            result.update(figures(json.loads(text)))
    return result


def main() -> int:
    runs, pairs, benches = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    rows = {}
    for bench in benches:
        for pair in range(1, pairs + 1):
            base = load(runs / f"base-{bench}-{pair}.jsonl")
            new = load(runs / f"new-{bench}-{pair}.jsonl")
            for key, (b, higher) in base.items():
                if key not in new or b == 0 or new[key][0] == 0:
                    continue
                n = new[key][0]
                ratio = n / b if higher else b / n
                rows.setdefault(key, []).append((b, n, ratio))
    failed = 0
    width = max((len(k) for k in rows), default=10)
    print(f"{'figure':<{width}}  {'base (median)':>14}  {'new (median)':>14}  ratios (>1: new better)  median")
    for key in sorted(rows):
        values = rows[key]
        ratios = [r for _, _, r in values]
        median = statistics.median(ratios)
        mark = "" if median >= THRESHOLD else "  < 0.95"
        failed += median < THRESHOLD
        print(
            f"{key:<{width}}  {statistics.median(b for b, _, _ in values):>14.1f}  "
            f"{statistics.median(n for _, n, _ in values):>14.1f}  "
            f"{' '.join(f'{r:.2f}' for r in ratios):<23}  {median:.2f}{mark}"
        )
    print(f"{len(rows)} figures, {failed} with a median ratio below {THRESHOLD}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
