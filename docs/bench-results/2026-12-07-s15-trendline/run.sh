#!/bin/sh
# The batch behind docs/benchmarks.md "Round 18": the feedback-cost harness on main before the
# detector moved to C (BEFORE: a copy of that commit's src with its _fastpath built) and on this
# tree, interleaved, compiled; then this tree pure Python, a third pair and split.py.
# Run from the repository root with BEFORE=<dir of the old tree's src>.
set -e
dir=docs/bench-results/2026-12-07-s15-trendline
py=${PY:-/work/main/.venv/bin/python}
after=$PWD/src
flock /tmp/zvonok-it.lock timeout 900 sh -c "
  { date -u; git rev-parse HEAD; git status --short src; echo before: \$(cat $BEFORE/../COMMIT); } > $dir/tree.txt
  PYTHONPATH=$BEFORE $py $dir/twcc_cost.py > $dir/before-1.txt 2>&1
  PYTHONPATH=$after $py $dir/twcc_cost.py > $dir/after-1.txt 2>&1
  PYTHONPATH=$BEFORE $py $dir/twcc_cost.py > $dir/before-2.txt 2>&1
  PYTHONPATH=$after $py $dir/twcc_cost.py > $dir/after-2.txt 2>&1
"
flock /tmp/zvonok-it.lock timeout 900 sh -c "
  ZVONOK_PURE_PYTHON=1 PYTHONPATH=$after $py $dir/twcc_cost.py > $dir/after-pure-python.txt 2>&1
  PYTHONPATH=$BEFORE $py $dir/twcc_cost.py > $dir/before-3.txt 2>&1
  PYTHONPATH=$after $py $dir/twcc_cost.py > $dir/after-3.txt 2>&1
  PYTHONPATH=$after $py $dir/split.py > $dir/split.txt 2>&1
  PYTHONPATH=$BEFORE $py docs/bench-results/2026-12-07-s14-twcc/split.py > $dir/split-before.txt 2>&1 || true
"
