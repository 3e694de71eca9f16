#!/usr/bin/env bash
# usage: s15_final.sh OUT  (base=/work/wt/base, new=/work/wt/final); every run holds the integration lock
set -u
OUT=$1; mkdir -p $OUT
FLOOR=/work/main/docs/bench-results/2026-12-07-s15-floor
cc -O2 -o /tmp/zvonok-floor-relay $FLOOR/relay.c
cd /tmp
run() { # scenario tree i dur [extra]
  PYTHONPATH=/work/wt/$2/src timeout 400 flock /tmp/zvonok-it.lock /work/main/.venv/bin/python -m zvonok bench $1 --duration $4 ${5:-} --json $OUT/$1-$2-$3.json > $OUT/$1-$2-$3.txt 2>/dev/null
  echo "$1 $2 $3 rc=$? $(date +%T) load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a $OUT/log.txt
}
for i in 1 2 3; do
  run calls-1to1-x25 base $i 15; run calls-1to1-x25 final $i 15
  (cd $FLOOR && RELAY=/tmp/zvonok-floor-relay PYTHONPATH=/work/main/src timeout 120 flock /tmp/zvonok-it.lock /work/main/.venv/bin/python gen.py 15 > $OUT/floor-$i.txt 2>&1)
  echo "floor $i $(tail -1 $OUT/floor-$i.txt) $(date +%T) load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a $OUT/log.txt
done
for i in 1 2; do
  PYTHONPATH=/work/wt/final/src timeout 400 flock /tmp/zvonok-it.lock /work/main/.venv/bin/python -m zvonok bench calls-1to1-x25 --janus --duration 15 --json $OUT/calls-1to1-x25-janus-$i.json > $OUT/calls-1to1-x25-janus-$i.txt 2>/dev/null
  echo "janus $i rc=$? $(date +%T) load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a $OUT/log.txt
done
for i in 1 2 3; do run idle-200 base $i 30; run idle-200 final $i 30; done
for i in 1 2 3; do run mesh-4 base $i 15; run mesh-4 final $i 15; run fanout-2x20 base $i 15; run fanout-2x20 final $i 15; done
echo done | tee -a $OUT/log.txt
