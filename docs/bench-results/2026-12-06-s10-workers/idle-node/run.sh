#!/usr/bin/env bash
# An idle 2-worker node before/after (session 10, issue 13): CPU over 20 s from 5 s after start
# (idle.py, 3 runs each, interleaved) and every process's syscalls over 10 s (trace_tt.py,
# strace -f -tt). Run from the repository root under the integration lock:
#   flock /tmp/zvonok-it.lock docs/bench-results/2026-12-06-s10-workers/idle-node/run.sh
set -uo pipefail
HERE=docs/bench-results/2026-12-06-s10-workers/idle-node
PY=$PWD/.venv/bin/python
for r in 1 2 3; do
  for v in before after; do
    echo "{\"code\": \"$v\", \"result\": $(cd /tmp && PYTHONPATH=/tmp/h1/$v/src timeout 120 "$PY" "$OLDPWD/$HERE/idle.py" 2)}" >>"$HERE/idle.jsonl"
  done
done
