#!/bin/sh
# fanout-2x20 with single-layer publishers vs 3-layer simulcast publishers (zvonok bench
# --simulcast) [vs simulcast publishers following dynacast (--simulcast --dynacast)], 3 runs each,
# interleaved (single, simulcast, [dynacast,] single, ...), each run holding the integration-test
# lock. Run from the repository root:
#   DURATION=20 LABELS="single simulcast" sh run.sh            -> 20s/
#   DURATION=60 LABELS="single simulcast dynacast" sh run.sh   -> 60s/
# SRC (default: src) is the tree measured; the batches here ran on a clean export of one commit
# (git archive COMMIT src, plus the compiled _fastpath built from the same C) with
# PYTHONPATH=that/src, so server and generator are exactly that commit (20s/: 0fb2aac, 60s:
# a0bdc44). Skips runs whose JSON exists, so it can be resumed.
set -eu
DURATION=${DURATION:-20}
LABELS=${LABELS:-single simulcast}
OUT=docs/bench-results/2026-12-06-simulcast/${DURATION}s
SRC=${SRC:-src}
mkdir -p "$OUT/logs"
for run in 1 2 3; do
  for label in $LABELS; do
    json="$OUT/$label-fanout-2x20-$run.json"
    [ -e "$json" ] && continue
    case $label in
      single) extra="" ;;
      simulcast) extra="--simulcast" ;;
      dynacast) extra="--simulcast --dynacast" ;;
    esac
    PYTHONPATH="$SRC" flock /tmp/zvonok-it.lock timeout 900 .venv/bin/python -m zvonok bench \
      fanout-2x20 --duration "$DURATION" --warmup 3 --json "$json" $extra \
      >"$OUT/logs/$label-$run.out" 2>"$OUT/logs/$label-$run.err"
  done
done
