#!/usr/bin/env bash
# The floor of this VM: a bare relay (relay.c: epoll + recvmmsg + sendmmsg, no SRTP, no logic)
# driven by gen.py (the bench's traffic shape) for DURATION seconds, RUNS times, each run holding
# the integration-test lock. Usage: run.sh [DURATION] [RUNS]; needs gcc and the project's venv.
set -eu
cd "$(dirname "$0")"
DUR=${1:-20}; RUNS=${2:-3}
cc -O2 -o /tmp/zvonok-floor-relay relay.c
for i in $(seq 1 "$RUNS"); do
  RELAY=/tmp/zvonok-floor-relay PYTHONPATH=../../../src timeout 120 flock /tmp/zvonok-it.lock \
    ../../../.venv/bin/python gen.py "$DUR" | tail -1
done
