#!/usr/bin/env bash
# run.sh BEFORE_SRC AFTER_SRC [OUT]: batched receive (issue 17, first bullet) before/after,
# interleaved, medians of 3: calls-1to1-x25, mesh-4, fanout-2x20, 15 s windows, --warmup 3, a
# fresh server per run (`zvonok bench` spawns it from the same PYTHONPATH as itself). Each pass
# over the six runs holds the integration-test lock. The sources were prepared as:
#   git archive a4d1177 src | tar -x -C /tmp/zv-before   (before: one recvmsg per wake-up)
#   the working copy with Demux.drain                     (after: recvmmsg, 32 a call)
#   and _fastpath.c built into each with the same
#   gcc -O2 -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -fPIC -shared
set -euo pipefail
BEFORE=$1; AFTER=$2; OUT=${3:-docs/bench-results/2026-12-05-issue17-recvmmsg}
PY=${PY:-.venv/bin/python}
mkdir -p "$OUT/before" "$OUT/after" "$OUT/logs"
one() {  # LABEL SRC SCENARIO RUN
  local name="$1-$3-$4"
  [ -e "$OUT/$1/$name.json" ] && return 0
  PYTHONPATH=$2 timeout 300 "$PY" -m zvonok bench "$3" --duration 15 --warmup 3 \
    --json "$OUT/$1/$name.json" >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr" \
    || echo "FAILED: $name" >&2
}
for RUN in 1 2 3; do
  flock /tmp/zvonok-it.lock bash -c "$(declare -f one); OUT='$OUT' PY='$PY'
    for S in calls-1to1-x25 mesh-4 fanout-2x20; do
      if [ \$(( $RUN % 2 )) = 1 ]; then one before '$BEFORE' \$S $RUN; one after '$AFTER' \$S $RUN
      else one after '$AFTER' \$S $RUN; one before '$BEFORE' \$S $RUN; fi
    done"
done
