#!/usr/bin/env bash
# run.sh BEFORE_SRC AFTER_SRC [OUT]: issue 17, session 12 (the compiled receive path: each peer's
# receiver remembered per address, the copies of one recvmmsg batch sent with one sendmmsg, and
# the optional receive coalescing window) before/after, interleaved, one run each per pass
# (RUNS, default 1 2 3 4 5): calls-1to1-x25 (before, after, and after with
# ZVONOK_MEDIA_RX_WINDOW_US=500 and 1000), mesh-4, fanout-2x20 (before, after); 15 s windows,
# --warmup 3, a fresh server per run (`zvonok bench` spawns it from the same PYTHONPATH as
# itself). Each pass holds the integration-test lock; the order within a pass alternates.
# The sources were prepared as:
#   git archive e736f09 src | tar -x -C /tmp/h3-old   (before: main when the session began)
#   this session's tree copied to /tmp/h3-new           (after)
#   each with its own _fastpath .so built from its _fastpath.c (/tmp/lead/build_fastpath.sh).
set -euo pipefail
BEFORE=$1; AFTER=$2; OUT=${3:-docs/bench-results/2026-12-06-s12-1to1}
PY=${PY:-/work/main/.venv/bin/python}
mkdir -p "$OUT/before" "$OUT/after" "$OUT/after-w500" "$OUT/after-w1000" "$OUT/logs"
one() {  # LABEL SRC SCENARIO RUN [WINDOW]
  local name="$1-$3-$4"
  [ -e "$OUT/$1/$name.json" ] && return 0
  ZVONOK_MEDIA_RX_WINDOW_US=${5:-0} PYTHONPATH=$2 timeout 400 nice "$PY" -m zvonok bench "$3" \
    --duration 15 --warmup 3 --json "$OUT/$1/$name.json" >"$OUT/logs/$name.txt" \
    2>"$OUT/logs/$name.stderr" || echo "FAILED: $name" >&2
}
for RUN in ${RUNS:-1 2 3 4 5}; do
  flock /tmp/zvonok-it.lock timeout 900 bash -c "$(declare -f one); OUT='$OUT' PY='$PY'
    echo \"pass $RUN start \$(date -u +%T) \$(cat /proc/loadavg)\" >>'$OUT/logs/load.txt'
    if [ \$(( $RUN % 2 )) = 1 ]; then
      one before '$BEFORE' calls-1to1-x25 $RUN; one after '$AFTER' calls-1to1-x25 $RUN
      one after-w500 '$AFTER' calls-1to1-x25 $RUN 500; one after-w1000 '$AFTER' calls-1to1-x25 $RUN 1000
      for S in mesh-4 fanout-2x20; do one before '$BEFORE' \$S $RUN; one after '$AFTER' \$S $RUN; done
    else
      one after-w1000 '$AFTER' calls-1to1-x25 $RUN 1000; one after-w500 '$AFTER' calls-1to1-x25 $RUN 500
      one after '$AFTER' calls-1to1-x25 $RUN; one before '$BEFORE' calls-1to1-x25 $RUN
      for S in mesh-4 fanout-2x20; do one after '$AFTER' \$S $RUN; one before '$BEFORE' \$S $RUN; done
    fi
    echo \"pass $RUN end \$(date -u +%T) \$(cat /proc/loadavg)\" >>'$OUT/logs/load.txt'"
done
