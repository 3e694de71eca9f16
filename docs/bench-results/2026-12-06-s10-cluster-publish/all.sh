#!/bin/sh
# under ONE hold of /tmp/zvonok-it.lock: the bus micro-measurement, then the bench runs alternating
cd /tmp/h6/bench
date -u > times.txt
PYTHONPATH=/tmp/h6/after/src nice /work/main/.venv/bin/python /tmp/h6/measure_bus.py b a b a a b > micro.jsonl 2> micro.err
date -u >> times.txt
for i in 1 2 3; do
  for v in before after; do
    PYTHONPATH=/tmp/h6/$v/src timeout 300 nice /work/main/.venv/bin/python -m zvonok bench \
      calls-1to1-x25 --duration 5 --warmup 2 --nodes 2 --json $v-run$i.json > $v-run$i.txt 2>&1
    date -u >> times.txt
  done
done
