#!/usr/bin/env bash
# pyspy.sh SRC SCENARIO OUTPREFIX: run the bench with PYTHONPATH=SRC, py-spy record the server 12 s
set -u
SRC=$1; SC=$2; OUT=$3
cd /work/main
PYTHONPATH=$SRC timeout 300 .venv/bin/python -m zvonok bench $SC --duration 25 --warmup 3 --json $OUT.json >$OUT.txt 2>$OUT.stderr &
BPID=$!
for i in $(seq 1 100); do
  PPID2=$(pgrep -P $BPID | head -1); SPID=$([ -n "$PPID2" ] && pgrep -P $PPID2 -f "zvonok serve" | head -1)
  [ -n "$SPID" ] && break; sleep 0.2
done
echo "bench $BPID server $SPID"
sleep 14
/tmp/h2/tools/bin/py-spy record -p $SPID -r 250 -d 12 -f raw -o $OUT.spy.txt >$OUT.spy.log 2>&1
wait $BPID
echo rc=$?
