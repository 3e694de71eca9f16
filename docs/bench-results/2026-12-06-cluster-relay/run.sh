#!/bin/sh
# docs/benchmarks.md, "Cluster" (issue 14): relayed vs direct 1:1 joins, the code before and after
# the change alternating. BEFORE and AFTER are copies of src/ (git archive <commit> src | tar -x)
# with the compiled fast path copied in; each run under the integration-test lock, with nice.
set -e
BEFORE=${BEFORE:?a copy of ebde56a} AFTER=${AFTER:?a copy with the change}
for i in 1 2 3; do
  for v in before after; do
    if [ $v = before ]; then tree=$BEFORE; else tree=$AFTER; fi
    PYTHONPATH=$tree/src flock /tmp/zvonok-it.lock timeout 300 nice python -m zvonok bench \
      calls-1to1-x25 --duration 5 --warmup 2 --nodes 2 --json $v-run$i.json > $v-run$i.txt 2>&1
  done
done
# the legs: a copy instrumented by trace_patch.py, three runs, then legs.py
