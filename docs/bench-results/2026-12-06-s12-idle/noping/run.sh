#!/usr/bin/env bash
cd /work/main
for r in 1 2; do
 for v in base noping; do
  if [ $v = noping ]; then export ZVONOK_PING_INTERVAL=300; else unset ZVONOK_PING_INTERVAL; fi
  PYTHONPATH=/tmp/h4-old/src timeout 300 .venv/bin/python -m zvonok bench idle-200 --duration 20 --warmup 3 --json /tmp/h4/exp/$v-$r.json > /tmp/h4/exp/$v-$r.txt 2>/tmp/h4/exp/$v-$r.err
  grep "server CPU" /tmp/h4/exp/$v-$r.txt
 done
done
