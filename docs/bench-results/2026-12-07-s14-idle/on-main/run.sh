#!/bin/bash
# idle-200 30 s: old (main a7255a1) and new (/work/wt/h2) interleaved, one run per lock hold
cd /tmp
OLD=$1; NEW=$2; PAIRS=${3:-3}
for i in $(seq 1 $PAIRS); do
  if [ $((i % 2)) -eq 1 ]; then order="old new"; else order="new old"; fi
  for which in $order; do
    if [ $which = old ]; then tree=$OLD; else tree=$NEW; fi
    echo "$(date -u +%H:%M:%S) pair $i $which load $(cut -d' ' -f1-3 /proc/loadavg)"
    PYTHONPATH=$tree/src timeout 300 flock /tmp/zvonok-it.lock /work/main/.venv/bin/python -m zvonok bench idle-200 --duration 30 --json /tmp/h2/r2-idle-$which-$i.json > /tmp/h2/r2-idle-$which-$i.log 2>&1
    echo "  rc $? $(python3 -c "import json;d=json.load(open('/tmp/h2/r2-idle-$which-$i.json'));print(d.get('server_cpu_percent'), d.get('server_cpu_user_s'), d.get('server_cpu_system_s'), d.get('server_rss_mb'))" 2>&1 | tail -1)"
  done
done
