#!/usr/bin/env bash
# git bisect run: good (0) when the p99 SFU-added latency of calls-1to1-x25 is < 2.0 ms (min of 2 runs).
set -u
WT=$(pwd)
bash /tmp/lead/build_fastpath.sh "$WT" >/dev/null 2>&1 || exit 125
c=$(git rev-parse --short HEAD)
best=99
for i in 1 2; do
  out=/tmp/lead/q/bis-$c-$i.json
  (cd /tmp && PYTHONPATH=$WT/src timeout 300 flock /tmp/zvonok-it.lock /work/main/.venv/bin/python -m zvonok bench calls-1to1-x25 --duration 15 --json $out >/dev/null 2>&1) || exit 125
  p=$(python3 -c "import json;d=json.load(open('$out'));print(d['sfu_latency_ms']['p99'])")
  us=$(python3 -c "import json;d=json.load(open('$out'));print(d['cpu_us_per_delivered_packet'])")
  echo "$c run $i p99 $p us $us" >> /tmp/lead/bisect.log
  best=$(python3 -c "print(min($best,$p))")
done
python3 -c "import sys; sys.exit(0 if $best < 2.0 else 1)"
