#!/bin/bash
# after the idle pairs: wake-up counts (perf) old/new, one calls-1to1-x25 pair, then the
# integration files covering the change, each one lock hold
cd /tmp
while pgrep -f "/tmp/h2/run.sh" > /dev/null; do sleep 5; done
echo "$(date -u +%T) perf old"; /tmp/h2/perf.sh /tmp/h2/old old
echo "$(date -u +%T) perf new"; /tmp/h2/perf.sh /tmp/h2/new new
for which in new old; do
  if [ $which = old ]; then tree=/tmp/h2/old; else tree=/tmp/h2/new; fi
  echo "$(date -u +%T) calls $which load $(cut -d' ' -f1-3 /proc/loadavg)"
  PYTHONPATH=$tree/src timeout 300 flock /tmp/zvonok-it.lock /work/main/.venv/bin/python -m zvonok bench calls-1to1-x25 --duration 15 --json /tmp/h2/calls-$which.json > /tmp/h2/calls-$which.log 2>&1
  echo "  rc $?"
done
cd /work/wt/h2
for sel in "tests/integration/test_observability.py" "tests/integration/test_media.py -k aiortc_peers_in_a_private_chat or ice_restart or three_chromium" "tests/integration/test_workers.py" "tests/integration/test_resilience.py -k detached or hostile"; do
  echo "$(date -u +%T) $sel"
  set -- $sel
  file=$1; shift
  if [ $# -gt 0 ]; then shift; k="$*"; PYTHONPATH=/tmp/h2/new/src flock /tmp/zvonok-it.lock timeout 900 /work/main/.venv/bin/python -m pytest $file -q -k "$k" > /tmp/h2/it-$(basename $file).log 2>&1
  else PYTHONPATH=/tmp/h2/new/src flock /tmp/zvonok-it.lock timeout 900 /work/main/.venv/bin/python -m pytest $file -q > /tmp/h2/it-$(basename $file).log 2>&1; fi
  echo "  rc $? $(tail -1 /tmp/h2/it-$(basename $file).log)"
done
