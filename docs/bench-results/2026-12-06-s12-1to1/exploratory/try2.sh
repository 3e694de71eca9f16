#!/usr/bin/env bash
# try2.sh TAG: calls-1to1-x25 15 s for each CFG (label:src:window), with the server's context switches over 8 s
set -u
OUT=/tmp/h3-exp/$1; mkdir -p $OUT
cd /work/main
run() { # label src window scenario
  env ZVONOK_MEDIA_RX_WINDOW_US=$3 PYTHONPATH=$2 timeout 300 .venv/bin/python -m zvonok bench $4 --duration 15 --warmup 3 --json $OUT/$1-$4.json >$OUT/$1-$4.txt 2>$OUT/$1-$4.stderr &
  local B=$! SPID=""
  for i in $(seq 1 100); do
    P2=$(pgrep -P $B | head -1); SPID=$([ -n "$P2" ] && pgrep -P $P2 -f "zvonok serve" | head -1)
    [ -n "$SPID" ] && break; sleep 0.2
  done
  sleep 10
  a=$(awk '/^voluntary/{v=$2}/^nonvoluntary/{n=$2}END{print v, n}' /proc/$SPID/status); ta=$(awk '{print $1}' /proc/$SPID/schedstat)
  sleep 8
  b=$(awk '/^voluntary/{v=$2}/^nonvoluntary/{n=$2}END{print v, n}' /proc/$SPID/status); tb=$(awk '{print $1}' /proc/$SPID/schedstat)
  wait $B
  echo "$1 ctxsw/s over 8 s: $(echo $a $b | awk '{printf "vol %.0f nonvol %.0f", ($3-$1)/8, ($4-$2)/8}') main-thread cpu ms/s $(( (tb-ta)/8000000 ))"
  grep -E "µs per|SFU-added" $OUT/$1-$4.txt | sed "s/^/$1 /"
}
for cfg in ${CFGS}; do
  IFS=: read L SRC W <<<"$cfg"; run $L $SRC $W ${SCEN:-calls-1to1-x25}
done
