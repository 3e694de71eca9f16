#!/usr/bin/env bash
# prof.sh SRC OUTPREFIX: idle-200 (60 s window); wake-ups per thread from schedstat over 10 s,
# py-spy record 20 s at 200 Hz, then strace -c -f 10 s.
set -u
SRC=$1; OUT=$2
cd /work/main
PYTHONPATH=$SRC timeout 300 .venv/bin/python -m zvonok bench idle-200 --duration 60 --warmup 3 --json $OUT.json >$OUT.txt 2>$OUT.stderr &
BPID=$!
for i in $(seq 1 300); do
  PPID2=$(pgrep -P $BPID | head -1); SPID=$([ -n "$PPID2" ] && pgrep -P $PPID2 -f "zvonok serve" | head -1)
  [ -z "$SPID" ] && SPID=$(pgrep -P $BPID -f "zvonok serve" | head -1)
  [ -n "$SPID" ] && break; sleep 0.2
done
echo "bench $BPID server $SPID"
# wait for window start
for i in $(seq 1 300); do grep -q "t=  1s" $OUT.stderr 2>/dev/null && break; sleep 0.5; done
sleep 6
snap() { for t in /proc/$SPID/task/*; do echo "$(basename $t) $(cat $t/comm) $(cat $t/schedstat)"; done; }
snap > $OUT.sched0; sleep 10; snap > $OUT.sched1
/tmp/h4-spy/bin/py-spy record -p $SPID -r 200 -d 20 -f raw -o $OUT.spy.txt >$OUT.spy.log 2>&1
timeout 12 strace -c -f -p $SPID -o $OUT.strace.txt & SPIDS=$!; sleep 10; kill -INT $(pgrep -P $SPIDS strace) $SPIDS 2>/dev/null; wait $SPIDS
wait $BPID
echo rc=$?
