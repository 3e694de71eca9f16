#!/usr/bin/env bash
# try.sh TAG: calls-1to1-x25 15 s: old, new w=0, new w=300, new w=500
set -u
OUT=/tmp/h3-exp/$1; mkdir -p $OUT
cd /work/main
run() { # label src window scenario
  env ZVONOK_MEDIA_RX_WINDOW_US=$3 PYTHONPATH=$2 timeout 300 .venv/bin/python -m zvonok bench $4 --duration 15 --warmup 3 --json $OUT/$1-$4.json >$OUT/$1-$4.txt 2>$OUT/$1-$4.stderr
  grep -E "µs per|SFU-added" $OUT/$1-$4.txt | sed "s/^/$1 /"
}
for S in ${SCEN:-calls-1to1-x25}; do
for cfg in ${CFGS:-old:/tmp/h3-old/src:0 w0:/work/wt/h3/src:0 w300:/work/wt/h3/src:300 w500:/work/wt/h3/src:500}; do
  IFS=: read L SRC W <<<"$cfg"; run $L $SRC $W $S
done; done
