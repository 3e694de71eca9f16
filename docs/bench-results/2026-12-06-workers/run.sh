#!/usr/bin/env bash
# The batch behind the "Media workers" section of docs/benchmarks.md (2026-12-06); run from the
# repository root: docs/bench-results/2026-12-06-workers/run.sh. Every run is one `zvonok bench`
# command (its full command line is also in its JSON, key "command"), bounded by `timeout`.
# Runs with --workers 1 and --workers 2 are interleaved, scenario by scenario; each pass holds
# the integration-test lock, so no browser, server or other bench runs meanwhile (unit tests and
# type checks of others on the machine may). SRC, if set, is a source tree to run instead of the
# work tree's (the batch ran from a `git archive` snapshot of the commit it measures, so other
# people's uncommitted edits in the shared tree could not leak into it).
set -euo pipefail
OUT=${OUT:-docs/bench-results/2026-12-06-workers}
PY=${PY:-.venv/bin/python}
LOCK=/tmp/zvonok-it.lock
RUNS=${RUNS:-3}
if [ -n "${SRC:-}" ]; then export PYTHONPATH=$SRC; fi

run() {  # DIR NAME ARGS...: one run against the bench's own zvonok serve
  local dir=$1 name=$2; shift 2
  [ -e "$OUT/$dir/$name.json" ] && return 0
  timeout 300 "$PY" -m zvonok bench "$@" --json "$OUT/$dir/$name.json" \
    >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr" || echo "FAILED: $name" >&2
}

one_pass() {  # RUN
  local r=$1 s
  for s in fanout-2x20 mesh-4; do
    run pairs "w1-$s-$r" "$s" --duration 15 --warmup 3 --workers 1
    run pairs "w2-$s-$r" "$s" --duration 15 --warmup 3 --workers 2
  done
  run rooms8 "w2-mesh-4x8-$r" mesh-4 --rooms 8 --duration 15 --warmup 3 --workers 2
  # added after the first three passes (the one-process reference for eight rooms); a fresh
  # batch interleaves it with the rest
  run rooms8 "w1-mesh-4x8-$r" mesh-4 --rooms 8 --duration 15 --warmup 3 --workers 1
}

mkdir -p "$OUT/logs" "$OUT/pairs" "$OUT/rooms8"
for r in $(seq 1 "$RUNS"); do
  export -f run one_pass
  export OUT PY
  flock "$LOCK" bash -c "one_pass $r"
done
