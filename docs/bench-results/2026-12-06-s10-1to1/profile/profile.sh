#!/usr/bin/env bash
# profile.sh SRC SCENARIO OUTPREFIX: run the bench with PYTHONPATH=SRC, perf record the server
set -u
SRC=$1; SC=$2; OUT=$3
cd /work/main
PYTHONPATH=$SRC timeout 300 .venv/bin/python -m zvonok bench $SC --duration 25 --warmup 3 --json $OUT.json >$OUT.txt 2>$OUT.stderr &
BPID=$!
# wait for the server child
for i in $(seq 1 100); do
  PPID2=$(pgrep -P $BPID | head -1); SPID=$([ -n "$PPID2" ] && pgrep -P $PPID2 -f "zvonok serve" | head -1)
  [ -n "$SPID" ] && break; sleep 0.2
done
echo "bench $BPID server $SPID"
# wait until joins done: progress lines on stderr mention packets; simply sleep
sleep 14
perf record -F 999 -g -p $SPID -o $OUT.perf -- sleep 12 2>$OUT.perf.log
wait $BPID
echo rc=$?
