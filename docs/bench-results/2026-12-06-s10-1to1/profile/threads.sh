#!/usr/bin/env bash
set -u
SRC=$1; SC=$2; OUT=$3
cd /work/main
PYTHONPATH=$SRC timeout 300 .venv/bin/python -m zvonok bench $SC --duration 20 --warmup 3 --json $OUT.json >$OUT.txt 2>$OUT.stderr &
BPID=$!
for i in $(seq 1 100); do
  PPID2=$(pgrep -P $BPID | head -1); SPID=$([ -n "$PPID2" ] && pgrep -P $PPID2 -f "zvonok serve" | head -1)
  [ -n "$SPID" ] && break; sleep 0.2
done
sleep 14
snap() { for t in /proc/$SPID/task/*; do echo "$(basename $t) $(cat $t/comm) $(awk '{print $14, $15}' $t/stat)"; done; }
snap > $OUT.t0; sleep 10; snap > $OUT.t1
wait $BPID
paste $OUT.t0 $OUT.t1 | awk '{printf "%s %s utime %d stime %d\n", $1, $2, $7-$3, $8-$4}'
