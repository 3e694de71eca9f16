#!/usr/bin/env bash
# Session 10 (issue 13): --workers 2 before/after the link round-trip and wake-up changes
# (d6d1c88, 098c2ba), interleaved, against --workers 1. Run from the repository root:
#   docs/bench-results/2026-12-06-s10-workers/run.sh
# BEFORE / AFTER are `git archive` snapshots (BEFORE: d68b119; AFTER: d68b119 with relay/front.py,
# worker.py, link.py of 098c2ba; the compiled _fastpath .so copied
# in), run with PYTHONPATH, so nobody's uncommitted edits in the shared tree leak in. The
# one-process runs (w1) come from AFTER: a one-process node runs none of the relay code the
# change touched, so one w1 run per pass is the reference for both. The whole batch holds the
# integration-test lock once (no other server, browser or bench meanwhile; other helpers' unit tests
# and type checks may run: the machine is shared). Every run is one `zvonok bench` command
# (its command line is in its JSON, key "command").
set -uo pipefail
OUT=${OUT:-docs/bench-results/2026-12-06-s10-workers}
PY=${PY:-$PWD/.venv/bin/python}
BEFORE=${BEFORE:-/tmp/h1/before/src}
AFTER=${AFTER:-/tmp/h1/after/src}
LOCK=/tmp/zvonok-it.lock
RUNS=${RUNS:-3}

run() {  # DIR NAME SRC ARGS...
  local dir=$1 name=$2 src=$3; shift 3
  [ -e "$OUT/$dir/$name.json" ] && return 0
  PYTHONPATH=$src timeout 300 "$PY" -m zvonok bench "$@" --json "$OUT/$dir/$name.json" \
    >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr" || echo "FAILED: $name" >&2
}

phase() {  # NAME SRC SCENARIO WORKERS ROOMS: the join-phase script (2 s window)
  local name=$1 src=$2; shift 2
  echo "{\"run\": \"$name\", \"result\": $(cd /tmp && PYTHONPATH=$src timeout 120 "$PY" "$OLDPWD/$OUT/join-phases/phases.py" "$@" 2>>"$OLDPWD/$OUT/logs/$name.stderr" | tail -1)}" \
    >>"$OUT/join-phases/out.jsonl"
}

one_pass() {  # RUN
  local r=$1
  run pairs "w1-fanout-2x20-$r" "$AFTER" fanout-2x20 --duration 15 --warmup 3 --workers 1
  run pairs "w2before-fanout-2x20-$r" "$BEFORE" fanout-2x20 --duration 15 --warmup 3 --workers 2
  run pairs "w2after-fanout-2x20-$r" "$AFTER" fanout-2x20 --duration 15 --warmup 3 --workers 2
  run pairs "w1-mesh-4-$r" "$AFTER" mesh-4 --duration 15 --warmup 3 --workers 1
  run pairs "w2before-mesh-4-$r" "$BEFORE" mesh-4 --duration 15 --warmup 3 --workers 2
  run pairs "w2after-mesh-4-$r" "$AFTER" mesh-4 --duration 15 --warmup 3 --workers 2
  run rooms8 "w1-mesh-4x8-$r" "$AFTER" mesh-4 --rooms 8 --duration 15 --warmup 3 --workers 1
  run rooms8 "w2before-mesh-4x8-$r" "$BEFORE" mesh-4 --rooms 8 --duration 15 --warmup 3 --workers 2
  run rooms8 "w2after-mesh-4x8-$r" "$AFTER" mesh-4 --rooms 8 --duration 15 --warmup 3 --workers 2
  phase "ph-w1-fanout-$r" "$AFTER" fanout-2x20 1 1
  phase "ph-w2before-fanout-$r" "$BEFORE" fanout-2x20 2 1
  phase "ph-w2after-fanout-$r" "$AFTER" fanout-2x20 2 1
  phase "ph-w1-mesh8-$r" "$AFTER" mesh-4 1 8
  phase "ph-w2before-mesh8-$r" "$BEFORE" mesh-4 2 8
  phase "ph-w2after-mesh8-$r" "$AFTER" mesh-4 2 8
}

mkdir -p "$OUT/logs" "$OUT/pairs" "$OUT/rooms8" "$OUT/join-phases"
export -f run phase one_pass
export OUT PY BEFORE AFTER
all_passes() {
  for r in $(seq 1 "$RUNS"); do
    echo "pass $r start: $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)"
    one_pass "$r"
  done
  echo "end: $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)"
}
export -f all_passes
export RUNS
# one lock hold for all passes (~15 min): the lock was contended by many helpers this session
echo "waits for the lock: $(date -u +%T)"
flock "$LOCK" bash -c all_passes
