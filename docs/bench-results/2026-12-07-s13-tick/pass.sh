#!/bin/bash
# one pass: before and after (order given), calls-1to1-x25 15 s each; $1 = pass number, $2 = order "before after"
P=$1; shift
cd /tmp
for code in "$@"; do
  echo "$(date -u +%T) pass $P $code load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/h3/runs/load.txt
  PYTHONPATH=/tmp/h3/$code/src /work/main/.venv/bin/python -m zvonok bench calls-1to1-x25 --duration 15 --json /tmp/h3/runs/$code-calls-1to1-x25-$P.json > /tmp/h3/runs/$code-calls-$P.log 2>&1
done
