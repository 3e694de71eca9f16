#!/usr/bin/env bash
# run.sh BEFORE_SRC AFTER_SRC [OUT]: issue 17, session 13 (the quality monitor's stats spread over
# the interval and sent as built) before/after, interleaved: three passes, each idle-200 (30 s
# window) then calls-1to1-x25 (15 s), before and after in alternating order; --warmup 3, a fresh
# server per run (`zvonok bench` spawns it from the same PYTHONPATH as itself). Each run is one
# hold of the integration-test lock. The sources were prepared as:
#   git archive 19758ba src | tar -x -C /tmp/h2-old   (before: the commit the change branched from)
#   git archive fbf9554 src | tar -x -C /tmp/h2-new   (after)
# both with the same compiled _fastpath (built by /tmp/lead/build_fastpath.sh from the same .c).
set -euo pipefail
BEFORE=$1; AFTER=$2; OUT=${3:-docs/bench-results/2026-12-07-s13-stats}
PY=${PY:-/work/main/.venv/bin/python}
OUT=$(mkdir -p "$OUT" && cd "$OUT" && pwd)
mkdir -p "$OUT/before" "$OUT/after" "$OUT/logs"
one() {  # LABEL SRC SCENARIO RUN
  local name="$1-$3-$4" duration=15
  [ "$3" = idle-200 ] && duration=30
  [ -e "$OUT/$1/$name.json" ] && return 0
  echo "$name start $(date -u +%T) $(cat /proc/loadavg)" >>"$OUT/logs/load.txt"
  (cd /tmp && flock /tmp/zvonok-it.lock timeout 900 env PYTHONPATH="$2" "$PY" -m zvonok bench \
    "$3" --duration $duration --warmup 3 --json "$OUT/$1/$name.json" \
    >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr") || echo "FAILED: $name" >&2
}
for RUN in ${RUNS:-1 2 3}; do
  for S in idle-200 calls-1to1-x25; do
    if [ $(( RUN % 2 )) = 1 ]; then one before "$BEFORE" $S $RUN; one after "$AFTER" $S $RUN
    else one after "$AFTER" $S $RUN; one before "$BEFORE" $S $RUN; fi
  done
done
