#!/usr/bin/env bash
# The batch behind the tables of docs/benchmarks.md measured on 2026-12-05; run from the
# repository root: docs/bench-results/2026-12-05/run.sh [OUT_DIR]. Every run is one
# `zvonok bench` command (its full command line is also in its JSON, key "command"), bounded by
# `timeout`; runs of different scenarios and servers are interleaved. Each pass over every
# scenario holds the integration-test lock, so no browser, server or other bench test runs
# meanwhile (unit tests and type checks of others working on the machine may). Janus runs
# inside a network namespace of their own with a veth address in 198.18.0.0/15 (Janus never
# gathers on loopback; see docs/benchmarks.md); zvonok runs on the host's loopback. A run whose
# JSON already exists is skipped, so an interrupted batch can be resumed.
set -euo pipefail
OUT=${OUT:-docs/bench-results/2026-12-05}
PY=${PY:-.venv/bin/python}
LOCK=/tmp/zvonok-it.lock
RUNS=${RUNS:-3}
PACED="calls-1to1-x25 mesh-4 fanout-2x5 fanout-2x10 fanout-2x20 fanout-2x40 audio-100"

zvonok() {  # DIR NAME ARGS...: one run against our own zvonok serve
  local dir=$1 name=$2; shift 2
  [ -e "$OUT/$dir/$name.json" ] && return 0
  timeout 300 "$PY" -m zvonok bench "$@" --json "$OUT/$dir/$name.json" \
    >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr" || echo "FAILED: $name" >&2
}

janus() {  # DIR NAME ARGS...: one run against our own Janus, in a namespace of its own
  local dir=$1 name=$2; shift 2
  [ -e "$OUT/$dir/$name.json" ] && return 0
  local bench
  bench=$(printf '%q ' "$PY" -m zvonok bench "$@" --janus --json "$OUT/$dir/$name.json")
  timeout 300 unshare -n sh -c "ip link set lo up && \
    ip link add zvb0 type veth peer name zvb1 && ip addr add 198.18.0.1/24 dev zvb0 && \
    ip link set zvb0 up && ip link set zvb1 up && exec $bench" \
    >"$OUT/logs/$name.txt" 2>"$OUT/logs/$name.stderr" || echo "FAILED: $name" >&2
}

one_pass() {  # RUN: every scenario once
  local run=$1 s
  for s in $PACED; do
    zvonok paced "dec05-$s-$run" "$s" --duration 15 --warmup 3
    janus paced "dec05-$s-janus-$run" "$s" --duration 15 --warmup 3
  done
  for s in mesh-4 fanout-2x20; do
    zvonok no-pacing "bursts-$s-$run" "$s" --duration 15 --warmup 3 --no-pacing
  done
  zvonok idle "dec05-idle-200-$run" idle-200 --duration 30 --warmup 3
}

if [ "${1:-}" = --pass ]; then
  one_pass "$2"
  exit 0
fi
mkdir -p "$OUT/paced" "$OUT/no-pacing" "$OUT/idle" "$OUT/logs"
for run in $(seq 1 "$RUNS"); do
  echo "pass $run: waiting for the lock ($(date -u +%H:%M:%S))"
  flock "$LOCK" "$0" --pass "$run"
  echo "pass $run: done ($(date -u +%H:%M:%S))"
done
