#!/usr/bin/env bash
# profile a --workers N bench run's processes: $1 scenario $2 workers $3 tag
set -u
S=$1; W=$2; T=$3
cd /tmp
PYTHONPATH=/tmp/h2s11/${SRC:-before}/src timeout 120 /work/main/.venv/bin/python -m zvonok bench $S --duration 40 --warmup 3 --workers $W --json /tmp/h2s11/prof-$T.json > /tmp/h2s11/prof-$T.log 2>&1 &
BP=$!
sleep 14
BENCH=$(ps -o pid= --ppid $BP | head -1)
SERVER=$(ps -o pid= --ppid $BENCH | head -1)
echo server $SERVER
ps -o pid,args --ppid $SERVER
for p in $SERVER $(ps -o pid= --ppid $SERVER); do
  timeout 12 strace -f -c -p $p -o /tmp/h2s11/strace-$T-$p.txt 2>/dev/null &
  /tmp/h2s11/tools/bin/py-spy record -p $p -d 12 -r 200 --nonblocking -f raw -o /tmp/h2s11/spy-$T-$p.txt >/dev/null 2>&1 &
done
wait $BP
wait
