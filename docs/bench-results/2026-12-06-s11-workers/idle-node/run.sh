#!/usr/bin/env bash
# An idle node, one process and 2 workers before/after (session 11, issue 13): CPU (schedstat,
# ns) and wake-ups over 20 s from 5 s after start (idle.py), 3 runs each, interleaved, in one
# hold of the integration lock. Run from the repository root:
#   flock /tmp/zvonok-it.lock docs/bench-results/2026-12-06-s11-workers/idle-node/run.sh
set -uo pipefail
HERE=docs/bench-results/2026-12-06-s11-workers/idle-node
PY=$PWD/.venv/bin/python
for r in 1 2 3; do
  for v in w1:after:1 w2before:before:2 w2after:after:2; do
    IFS=: read -r name src workers <<<"$v"
    out=$(cd /tmp && PYTHONPATH=/tmp/h2s11/$src/src timeout 120 "$PY" "$OLDPWD/$HERE/idle.py" "$workers")
    echo "{\"run\": \"$name-$r\", \"started\": \"$(date -u +%T)\", \"result\": $out}" >>"$HERE/idle.jsonl"
  done
done
