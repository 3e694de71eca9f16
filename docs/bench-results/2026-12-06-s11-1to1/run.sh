#!/usr/bin/env bash
# run.sh BEFORE_SRC AFTER_SRC [OUT]: issue 17, session 11 (the 1:1 call's housekeeping tick:
# active speakers reading only new packets, one receiver-report packet per publisher)
# before/after, interleaved, one run each per pass (RUNS, default 1 2 3; the batch ran 1 2 3,
# then RUNS="4 5"): calls-1to1-x25, mesh-4, fanout-2x20 (15 s windows)
# and idle-200 (30 s), --warmup 3, a fresh server per run (`zvonok bench` spawns it from the
# same PYTHONPATH as itself). Each pass over the eight runs holds the integration-test lock;
# the order within a pass alternates. The sources were prepared as:
#   git archive 3762ae5 src | tar -x -C /tmp/h3/before   (before: main when the session began)
#   the same plus this session's files (speakers.py, adaptive.py, layers.py, producer.py,
#   router.py, reports.py; mediaview.py's newest_seq/packet_ring/recent_packets(count))  (after)
#   both with the same compiled _fastpath (the .so built from 3762ae5's _fastpath.c) and
#   main's bench package of c04b4b3 (server CPU from schedstat, ns) copied into each.
set -euo pipefail
BEFORE=$1; AFTER=$2; OUT=${3:-docs/bench-results/2026-12-06-s11-1to1}
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
for RUN in ${RUNS:-1 2 3}; do
  flock /tmp/zvonok-it.lock timeout 1500 bash -c "$(declare -f one); OUT='$OUT' PY='$PY'
    echo \"pass $RUN start \$(date -u +%T) \$(cat /proc/loadavg)\" >>'$OUT/logs/load.txt'
    for S in calls-1to1-x25 mesh-4 fanout-2x20 idle-200; do
      if [ \$(( $RUN % 2 )) = 1 ]; then one before '$BEFORE' \$S $RUN; one after '$AFTER' \$S $RUN
      else one after '$AFTER' \$S $RUN; one before '$BEFORE' \$S $RUN; fi
    done
    echo \"pass $RUN end \$(date -u +%T) \$(cat /proc/loadavg)\" >>'$OUT/logs/load.txt'"
done
