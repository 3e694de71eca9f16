#!/usr/bin/env bash
# calls-1to1-x25 (15 s, --warmup 3) on main with the tick's slices and Round 12: 2aabf2c (before
# Round 11) against 981c49d (with it), interleaved pairs (RUNS, default 1 2 3; 4 5 6 ran after),
# each run one lock hold.
set -euo pipefail
OUT=$1; PY=/work/main/.venv/bin/python
mkdir -p "$OUT/before" "$OUT/after" "$OUT/logs"
one() {
  local name="$1-calls-1to1-x25-$3"
  echo "$name start $(date -u +%T) $(cat /proc/loadavg)" >>"$OUT/logs/load.txt"
  (cd /tmp && flock /tmp/zvonok-it.lock timeout 900 env PYTHONPATH="$2" "$PY" -m zvonok bench \
    calls-1to1-x25 --duration 15 --warmup 3 --json "$OUT/$1/$name.json" \
    >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr") || echo "FAILED: $name" >&2
}
for RUN in ${RUNS:-1 2 3}; do
  if [ $(( RUN % 2 )) = 1 ]; then one before /tmp/h2-p/src $RUN; one after /tmp/h2-m/src $RUN
  else one after /tmp/h2-m/src $RUN; one before /tmp/h2-p/src $RUN; fi
done
