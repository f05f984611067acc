#!/usr/bin/env bash
# Compares the benchmarks of two commits, run interleaved on one machine:
# base, new, base, new, ... for PAIRS pairs, so that a machine that gets busier or
# quieter during the run affects both sides alike. Prints, for every figure, the
# ratio new/base of each pair (oriented so that above 1 is better) and their median.
#
#   scripts/bench-interleaved.sh BASE NEW [PAIRS]        (default 3 pairs)
#
# Environment:
#   WARREN_BENCH_DATABASE_URL  PostgreSQL server for the PostgreSQL rows (default
#                              postgres://postgres@127.0.0.1:5432/postgres)
#   BENCHES                    which benches, default "store runtime vm"
#   BENCH_WORK                 where worktrees, builds and logs go (default
#                              /tmp/warren-bench-interleaved)
# The two commits are checked out as detached worktrees and built in release mode
# into one shared target folder (dependencies are built once). Raw JSON lines of every
# run are kept in $BENCH_WORK/runs/ for a second look.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
base_ref=$1
new_ref=$2
pairs=${3:-3}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_WORK:-/tmp/warren-bench-interleaved}
benches=${BENCHES:-store runtime vm}
export WARREN_BENCH_DATABASE_URL=${WARREN_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
export CARGO_TARGET_DIR=$work/target
mkdir -p "$work/runs"

declare -A bin
for side in base new; do
  ref=$base_ref
  [ "$side" = new ] && ref=$new_ref
  commit=$(git -C "$repo" rev-parse --verify "$ref^{commit}")
  tree=$work/$side
  if [ -d "$tree" ]; then
    git -C "$tree" checkout -q --detach "$commit"
  else
    git -C "$repo" worktree add -q --detach "$tree" "$commit"
  fi
  echo "$side: $(git -C "$tree" log -1 --format='%h %s')" | tee "$work/runs/$side.commit"
  # Both sides build into one target folder under the same names: make cargo look at
  # this side's sources afresh (their times may predate the other side's build).
  find "$tree/src" "$tree/actors" "$tree/benches" "$tree/testkit" "$tree/migrations" \
    -type f -exec touch {} +
  for b in $benches; do
    # The bench's executable, from cargo's own report (names carry a hash).
    exe=$(cd "$tree" && cargo bench --workspace --bench "$b" --no-run --message-format=json 2>"$work/build-$side-$b.log" |
      python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "bench" in m["target"]["kind"]:
        print(m["executable"])' | tail -n 1)
    if [ -z "$exe" ]; then
      echo "building bench $b of $side failed: see $work/build-$side-$b.log" >&2
      exit 1
    fi
    # The other side's build overwrites this file: run a copy of it.
    mkdir -p "$work/bin"
    cp "$exe" "$work/bin/$side-$b"
    bin[$side-$b]=$work/bin/$side-$b
  done
done

# Benches find the repository's files (examples, the toolkit) relative to where they
# run: each side runs in its own worktree.
for pair in $(seq 1 "$pairs"); do
  for side in base new; do
    for b in $benches; do
      out=$work/runs/$side-$b-$pair.jsonl
      echo "pair $pair: $side $b" >&2
      (cd "$work/$side" && "${bin[$side-$b]}" --bench 2>"$work/runs/$side-$b-$pair.err" |
        grep '^{' >"$out") || { echo "run failed: $work/runs/$side-$b-$pair.err" >&2; exit 1; }
    done
  done
done

python3 "$repo/scripts/bench_compare.py" "$work/runs" "$pairs" $benches
