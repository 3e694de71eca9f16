#!/bin/sh
# The batch behind docs/benchmarks.md "Round 17" and "Transport-cc feedback cost": the same
# harness on main before issue 17 (BEFORE: a tree of that commit with its _fastpath built) and on
# this tree, interleaved, compiled; then the real-cadence replay busy-waiting (--spin), and this
# tree pure Python. Run from the repository root with BEFORE=<dir of the old tree's src>.
set -e
dir=docs/bench-results/2026-12-07-s14-twcc
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
  PYTHONPATH=$BEFORE $py $dir/twcc_cost.py --spin > $dir/before-spin.txt 2>&1
  PYTHONPATH=$after $py $dir/twcc_cost.py --spin > $dir/after-spin.txt 2>&1
  ZVONOK_PURE_PYTHON=1 PYTHONPATH=$after $py $dir/twcc_cost.py > $dir/after-pure-python.txt 2>&1
"
# then a third interleaved pair, and where the rest goes (split.py)
flock /tmp/zvonok-it.lock timeout 900 sh -c "
  PYTHONPATH=$BEFORE $py $dir/twcc_cost.py > $dir/before-3.txt 2>&1
  PYTHONPATH=$after $py $dir/twcc_cost.py > $dir/after-3.txt 2>&1
  PYTHONPATH=$after $py $dir/split.py > $dir/split.txt 2>&1
"
