#!/bin/bash
# usage: prof_bench.sh TREE OUTPREFIX
TREE=$1; OUT=$2
cd /tmp
PYTHONPATH=$TREE/src /work/main/.venv/bin/python -m zvonok bench calls-1to1-x25 --duration 25 --json $OUT.json > $OUT.bench.txt 2>&1 &
B=$!
SRV=""
for i in $(seq 1 60); do
  sleep 1
  SRV=$(pgrep -P $B -f "zvonok serve" | head -1)
  [ -n "$SRV" ] && break
done
echo "bench $B server $SRV"
sleep 14   # joins + warmup
/tmp/h4-spy/bin/py-spy record -p $SRV -r 250 -d 12 -f raw -o $OUT.raw --nonblocking > $OUT.spy.txt 2>&1
wait $B
echo done
