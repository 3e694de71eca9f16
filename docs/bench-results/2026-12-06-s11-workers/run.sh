#!/usr/bin/env bash
# Session 11 (issue 13): --workers 2 before/after against --workers 1, CPU from schedstat (ns).
# Run from the repository root:   docs/bench-results/2026-12-06-s11-workers/run.sh
# BEFORE / AFTER are `git archive` snapshots (each with the schedstat bench of this session and
# _fastpath.c compiled with gcc -O2), run with PYTHONPATH, so nobody's uncommitted edits in the
# shared tree leak in. VARIANTS picks what a pass runs (w1: one process, from AFTER; w2before,
# w2after: 2 workers). Each pass holds the integration-test lock once (no other server, browser
# or bench meanwhile; other helpers' unit tests and type checks may run: the machine is shared).
# Every run is one `zvonok bench` command (its command line is in its JSON, key "command").
set -uo pipefail
OUT=${OUT:-docs/bench-results/2026-12-06-s11-workers}
PY=${PY:-$PWD/.venv/bin/python}
BEFORE=${BEFORE:-/tmp/h2s11/before/src}
AFTER=${AFTER:-/tmp/h2s11/after/src}
W1SRC=${W1SRC:-$AFTER}
LOCK=/tmp/zvonok-it.lock
RUNS=${RUNS:-3}
FIRST=${FIRST:-1}
VARIANTS=${VARIANTS:-"w1 w2before w2after"}
SCENARIOS=${SCENARIOS:-"fanout-2x20 mesh-4"}
DIR=${DIR:-pairs}

run() {  # NAME SRC ARGS...
  local name=$1 src=$2; shift 2
  [ -e "$OUT/$DIR/$name.json" ] && return 0
  PYTHONPATH=$src timeout 300 "$PY" -m zvonok bench "$@" --json "$OUT/$DIR/$name.json" \
    >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr" || echo "FAILED: $name" >&2
}

one_pass() {  # RUN
  local r=$1
  for s in $SCENARIOS; do
    for v in $VARIANTS; do
      case $v in
        w1) run "w1-$s-$r" "$W1SRC" $s --duration 15 --warmup 3 --workers 1 ;;
        w2before) run "w2before-$s-$r" "$BEFORE" $s --duration 15 --warmup 3 --workers 2 ;;
        w2after) run "w2after-$s-$r" "$AFTER" $s --duration 15 --warmup 3 --workers 2 ;;
      esac
    done
  done
}

mkdir -p "$OUT/logs" "$OUT/$DIR"
export -f run one_pass
export OUT PY BEFORE AFTER W1SRC VARIANTS SCENARIOS DIR
for r in $(seq "$FIRST" $((FIRST + RUNS - 1))); do
  echo "pass $r waits for the lock: $(date -u +%T)"
  flock "$LOCK" bash -c "echo \"pass $r start: \$(date -u +%T), load \$(cut -d' ' -f1-3 /proc/loadavg)\"; one_pass $r"
done
echo "end: $(date -u +%T), load $(cut -d' ' -f1-3 /proc/loadavg)"
