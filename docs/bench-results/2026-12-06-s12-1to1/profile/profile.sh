#!/usr/bin/env bash
# profile.sh SRC SCENARIO OUTPREFIX [perf|pyspy] [ENV=VAL...]: run `zvonok bench SCENARIO` (25 s window)
# with PYTHONPATH=SRC and record its server for 12 s, from 14 s after start: perf record -g
# (kernel and native symbols) or py-spy record (Python frames, with native ones).
set -u
SRC=$1; SC=$2; OUT=$3; TOOL=${4:-perf}; shift 4 || true
cd /work/main
env "$@" PYTHONPATH=$SRC timeout 300 .venv/bin/python -m zvonok bench $SC --duration 25 --warmup 3 --json $OUT.json >$OUT.txt 2>$OUT.stderr &
BPID=$!
for i in $(seq 1 100); do
  PPID2=$(pgrep -P $BPID | head -1); SPID=$([ -n "$PPID2" ] && pgrep -P $PPID2 -f "zvonok serve" | head -1)
  [ -n "$SPID" ] && break; sleep 0.2
done
echo "bench $BPID server $SPID"
sleep 14
if [ "$TOOL" = perf ]; then
  perf record -F 999 -g -p $SPID -o $OUT.perf -- sleep 12 2>$OUT.perf.log
else
  /tmp/h4-spy/bin/py-spy record -p $SPID -r 250 -d 12 -f raw -o $OUT.spy.txt >$OUT.spy.log 2>&1
fi
wait $BPID
echo rc=$?
