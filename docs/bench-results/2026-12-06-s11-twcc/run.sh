#!/bin/sh
# The batch behind docs/benchmarks.md "Transport-cc feedback cost (issue 15)". Run from the
# repository root; it takes the integration lock (a real-time phase: nothing else may run).
set -e
dir=docs/bench-results/2026-12-06-s11-twcc
flock /tmp/zvonok-it.lock timeout 600 sh -c "
  { date -u; git rev-parse HEAD; git status --short src; } > $dir/tree.txt
  .venv/bin/python $dir/twcc_cost.py > $dir/compiled-1.txt 2>&1
  ZVONOK_PURE_PYTHON=1 .venv/bin/python $dir/twcc_cost.py > $dir/pure-python.txt 2>&1
  .venv/bin/python $dir/twcc_cost.py > $dir/compiled-2.txt 2>&1
"
# then (18:4x UTC): the real-cadence replay with a busy-wait instead of sleeping between feedbacks
flock /tmp/zvonok-it.lock timeout 300 .venv/bin/python $dir/twcc_cost.py --spin > $dir/compiled-spin.txt 2>&1
