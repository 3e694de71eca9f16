#!/bin/bash
# $1 scenario, $2 run number, rest: codes in order
S=$1; P=$2; shift 2
cd /tmp
for code in "$@"; do
  echo "$(date -u +%T) $S $P $code load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/h3/runs/load.txt
  PYTHONPATH=/tmp/h3/$code/src /work/main/.venv/bin/python -m zvonok bench $S --duration 15 --json /tmp/h3/runs/$code-$S-$P.json > /tmp/h3/runs/$code-$S-$P.log 2>&1
done
