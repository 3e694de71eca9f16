#!/usr/bin/env bash
# usage: interleave.sh OUTDIR SCENARIO DURATION PAIRS  (base=/work/wt/base, new=/work/wt/final)
set -u
OUT=$1; SC=$2; DUR=$3; PAIRS=$4
mkdir -p $OUT
cd /tmp
for i in $(seq 1 $PAIRS); do
  for tree in base final; do
    PYTHONPATH=/work/wt/$tree/src timeout 400 flock /tmp/zvonok-it.lock /work/main/.venv/bin/python -m zvonok bench $SC --duration $DUR --json $OUT/$SC-$tree-$i.json >/dev/null 2>&1
    echo "$SC $tree $i rc=$? $(date +%T) load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
