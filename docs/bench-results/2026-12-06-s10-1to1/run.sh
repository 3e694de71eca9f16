#!/usr/bin/env bash
# run.sh BEFORE_SRC AFTER_SRC [OUT]: issue 17, session 10 (RTCP out through the compiled send
# target) before/after, interleaved, 3 runs each: calls-1to1-x25, mesh-4, fanout-2x20 (15 s
# windows) and idle-200 (30 s), --warmup 3, a fresh server per run (`zvonok bench` spawns it
# from the same PYTHONPATH as itself). Each pass over the eight runs holds the integration-test
# lock; the order within a pass alternates. The sources were prepared as:
#   git archive d68b119 | tar -x -C /tmp/h2/before      (before: main when the session began)
#   the same plus this change                            (after)
#   and _fastpath.c built into each with the same command (/tmp/h2/build.sh: sysconfig's CFLAGS
#   -g -fwrapv -O3 -Wall, then pyproject's -O2 -Wall -Wextra ..., -fPIC -shared)
set -euo pipefail
BEFORE=$1; AFTER=$2; OUT=${3:-docs/bench-results/2026-12-06-s10-1to1}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT/before" "$OUT/after" "$OUT/logs"
one() {  # LABEL SRC SCENARIO RUN
  local name="$1-$3-$4" duration=15
  [ "$3" = idle-200 ] && duration=30
  [ -e "$OUT/$1/$name.json" ] && return 0
  PYTHONPATH=$2 timeout 400 "$PY" -m zvonok bench "$3" --duration $duration --warmup 3 \
    --json "$OUT/$1/$name.json" >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr" \
    || echo "FAILED: $name" >&2
}
for RUN in 1 2 3; do
  flock /tmp/zvonok-it.lock timeout 1500 bash -c "$(declare -f one); OUT='$OUT' PY='$PY'
    uptime >>'$OUT/logs/load.txt'
    for S in calls-1to1-x25 mesh-4 fanout-2x20 idle-200; do
      if [ \$(( $RUN % 2 )) = 1 ]; then one before '$BEFORE' \$S $RUN; one after '$AFTER' \$S $RUN
      else one after '$AFTER' \$S $RUN; one before '$BEFORE' \$S $RUN; fi
    done
    uptime >>'$OUT/logs/load.txt'"
done
