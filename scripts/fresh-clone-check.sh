#!/usr/bin/env bash
# Checks that the README's two commands work on a fresh machine: clones this repository
# (its committed HEAD) into a temporary folder, with its own HOME, an empty Warren cache
# and no node_modules anywhere, then runs, exactly as the README writes them:
#
#   1. cargo run --release -- serve --modules examples/modules      (in the background)
#      cargo run --release -- schedule demo:ping '{"ping": 42}' --wait 120
#      (the demo task must complete with {"pong":42}), then stops the service;
#   2. WARREN_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo test --workspace
#
# Rust comes from the machine's rustup and cargo (CARGO_HOME and RUSTUP_HOME keep
# pointing at them, so the crate registry is not downloaded again), and npm keeps the
# machine's download cache (FRESH_NPM_CACHE=1 uses an empty one as well).
#
# Usage: scripts/fresh-clone-check.sh [--quick]
#   --quick  what CI runs: step 1 only, with a debug build (`cargo run --`) in
#            $CARGO_TARGET_DIR (default: this checkout's target/), whose dependencies
#            are built already. Without it the clone builds in its own target folder
#            from scratch (release and debug: plan for most of an hour on two cores).
# KEEP=1 keeps the temporary folder.
set -euo pipefail

quick=false
case "${1:-}" in
  --quick) quick=true ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

source_repo=$(cd "$(dirname "$0")/.." && pwd)
for tool in git cargo node npm; do
  command -v "$tool" >/dev/null || { echo "fresh-clone-check: $tool is not on the PATH" >&2; exit 1; }
done

export CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
if [ "${FRESH_NPM_CACHE:-0}" != 1 ]; then
  npm_config_cache=$(npm config get cache)
  export npm_config_cache
fi
if $quick; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$source_repo/target}"
  run=(cargo run --)
else
  unset CARGO_TARGET_DIR
  run=(cargo run --release --)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/warren-fresh-clone.XXXXXX")
serve_pid=""
cleanup() {
  if [ -n "$serve_pid" ] && kill -0 "$serve_pid" 2>/dev/null; then
    kill -TERM -- "-$serve_pid" 2>/dev/null || true
    wait "$serve_pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    echo "fresh-clone-check: kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# A machine of its own: HOME, no Warren cache or toolkit settings from this one.
export HOME="$tmp/home"
mkdir -p "$HOME"
unset XDG_CACHE_HOME WARREN_CACHE_DIR WARREN_JS_KIT WARREN_JS_ENGINE WARREN_DATABASE_URL WARREN_TOKEN

git clone --quiet --no-hardlinks "$source_repo" "$tmp/warren"
cd "$tmp/warren"
echo "fresh-clone-check: $(git log -1 --format='%h %s') in $tmp/warren"
if [ -n "$(find . -name node_modules -print -quit)" ]; then
  echo "fresh-clone-check: the clone has a node_modules folder" >&2
  exit 1
fi

# Step 1: the service, in a process group of its own so it can be stopped as a whole.
started=$(date +%s)
: >"$tmp/serve.log"
setsid "${run[@]}" serve --modules examples/modules >"$tmp/serve.log" 2>&1 &
serve_pid=$!
# Wait (bounded) for the node to run: it prints its dashboard's address when it does.
deadline=$((started + 3600))
until grep -q '^dashboard: ' "$tmp/serve.log"; do
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "fresh-clone-check: the service exited; its output:" >&2
    cat "$tmp/serve.log" >&2
    exit 1
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "fresh-clone-check: the service did not start within an hour" >&2
    exit 1
  fi
  sleep 1
done
echo "fresh-clone-check: the service runs ($(($(date +%s) - started)) s after the command)"

scheduled=$(date +%s)
if ! outcome=$("${run[@]}" schedule demo:ping '{"ping": 42}' --wait 120 2>"$tmp/schedule.err"); then
  echo "fresh-clone-check: schedule failed: $outcome" >&2
  cat "$tmp/schedule.err" "$tmp/serve.log" >&2
  exit 1
fi
echo "$outcome"
if ! grep -q '"result":{"pong":42}' <<<"$outcome"; then
  echo "fresh-clone-check: demo:ping did not complete with {\"pong\":42}" >&2
  cat "$tmp/serve.log" >&2
  exit 1
fi
echo "fresh-clone-check: demo:ping completed $(($(date +%s) - scheduled)) s after it was scheduled (toolkit install and compile included)"

kill -TERM -- "-$serve_pid"
wait "$serve_pid" || true
serve_pid=""
if [ -n "$(find . -name node_modules -print -quit)" ]; then
  echo "fresh-clone-check: the service wrote a node_modules folder into the clone" >&2
  exit 1
fi
ls -d "$HOME"/.cache/warren/toolkits/js-*/guest/js/node_modules >/dev/null

if $quick; then
  echo "fresh-clone-check: OK (quick: serve and schedule)"
  exit 0
fi

# Step 2: the tests.
WARREN_TEST_DATABASE_URL=postgres://postgres@127.0.0.1/postgres cargo test --workspace
echo "fresh-clone-check: OK"
