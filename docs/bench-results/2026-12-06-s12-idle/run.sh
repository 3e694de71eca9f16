#!/usr/bin/env bash
# run.sh BEFORE_SRC AFTER_SRC [OUT]: issue 17, session 12 (an idle server's wake-ups) before/after,
# interleaved, one run each per pass (RUNS, default 1 2 3 4 5): idle-200 (30 s window) in every
# pass, mesh-4 and calls-1to1-x25 (15 s windows) in passes 1-3; --warmup 3, a fresh server per
# run (`zvonok bench` spawns it from the same PYTHONPATH as itself). Each pass holds the
# integration-test lock; the order within a pass alternates. The sources were prepared as:
#   git archive e736f09 src | tar -x -C /tmp/h4-old   (before: main when the session began)
#   git archive <h4 head> src | tar -x -C /tmp/h4-new (after)
# both with _fastpath built from the same _fastpath.c (/tmp/lead/build_fastpath.sh).
set -euo pipefail
BEFORE=$1; AFTER=$2; OUT=${3:-docs/bench-results/2026-12-06-s12-idle}
PY=${PY:-/work/main/.venv/bin/python}
mkdir -p "$OUT/before" "$OUT/after" "$OUT/logs"
one() {  # LABEL SRC SCENARIO RUN
  local name="$1-$3-$4" duration=15
  [ "$3" = idle-200 ] && duration=30
  [ -e "$OUT/$1/$name.json" ] && return 0
  PYTHONPATH=$2 timeout 400 "$PY" -m zvonok bench "$3" --duration $duration --warmup 3 \
    --json "$OUT/$1/$name.json" >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr" \
    || echo "FAILED: $name" >&2
}
for RUN in ${RUNS:-1 2 3 4 5}; do
  SCEN="idle-200"; [ "$RUN" -le 3 ] && SCEN="idle-200 mesh-4 calls-1to1-x25"
  flock /tmp/zvonok-it.lock timeout 900 nice bash -c "$(declare -f one); OUT='$OUT' PY='$PY'
    echo \"pass $RUN start \$(date -u +%T) \$(cat /proc/loadavg)\" >>'$OUT/logs/load.txt'
    for S in $SCEN; do
      if [ \$(( $RUN % 2 )) = 1 ]; then one before '$BEFORE' \$S $RUN; one after '$AFTER' \$S $RUN
      else one after '$AFTER' \$S $RUN; one before '$BEFORE' \$S $RUN; fi
    done
    echo \"pass $RUN end \$(date -u +%T) \$(cat /proc/loadavg)\" >>'$OUT/logs/load.txt'"
done
