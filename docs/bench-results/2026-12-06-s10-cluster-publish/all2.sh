#!/bin/sh
# second series under ONE hold of /tmp/zvonok-it.lock: micro again, the group scenario and 3 more 1:1 pairs, alternating
cd /tmp/h6/bench
date -u > times2.txt
PYTHONPATH=/tmp/h6/after/src nice /work/main/.venv/bin/python /tmp/h6/measure_bus.py a b b a a b > micro2.jsonl 2> micro2.err
date -u >> times2.txt
for i in 1 2 3; do
  for v in after before; do
    PYTHONPATH=/tmp/h6/$v/src timeout 300 nice /work/main/.venv/bin/python -m zvonok bench \
      fanout-2x10 --rooms 4 --duration 10 --warmup 3 --nodes 2 --json group-$v-run$i.json > group-$v-run$i.txt 2>&1
    date -u >> times2.txt
  done
done
for i in 4 5 6; do
  for v in after before; do
    PYTHONPATH=/tmp/h6/$v/src timeout 300 nice /work/main/.venv/bin/python -m zvonok bench \
      calls-1to1-x25 --duration 5 --warmup 2 --nodes 2 --json $v-run$i.json > $v-run$i.txt 2>&1
    date -u >> times2.txt
  done
done
