#!/usr/bin/env bash
set -u
S=$1; W=$2; T=$3
cd /tmp
PYTHONPATH=/tmp/h2s11/${SRC:-before}/src timeout 120 /work/main/.venv/bin/python -m zvonok bench $S --duration 25 --warmup 3 --workers $W --json /tmp/h2s11/tr-$T.json > /tmp/h2s11/tr-$T.log 2>&1 &
BP=$!
sleep 14
BENCH=$(ps -o pid= --ppid $BP | head -1)
SERVER=$(ps -o pid= --ppid $BENCH | head -1)
for p in $SERVER $(ps -o pid= --ppid $SERVER); do
  timeout 6 strace -f -tt -p $p -o /tmp/h2s11/tt-$T-$p.txt 2>/dev/null &
done
wait $BP
wait
