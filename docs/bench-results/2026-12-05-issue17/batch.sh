#!/bin/sh
# batch.sh BEFORE_SRC AFTER_SRC OUT: before/after interleaved, idle-200, 30 s, a fresh server per run.
# Run under the integration-test lock:
#   git archive 91d9f1e src | tar -x -C /tmp/before; git archive 70193da src | tar -x -C /tmp/after
#   (and copy the built src/zvonok/media/_fastpath*.so into both)
#   flock /tmp/zvonok-it.lock sh docs/bench-results/2026-12-05-issue17/batch.sh /tmp/before/src /tmp/after/src OUT
HERE=$(dirname "$0")
for RUN in 1 2 3; do
  sh "$HERE/run_idle.sh" before "$1" $RUN "$3"
  sh "$HERE/run_idle.sh" after "$2" $RUN "$3"
done
