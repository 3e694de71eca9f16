#!/bin/sh
# run_idle.sh LABEL SRC RUN OUTDIR (from the repository root): a server from the source tree SRC
# (PYTHONPATH; an archive of the commit measured) with the bench's own settings, then
# `zvonok bench idle-200 --url` against it (the bench of this checkout); the server is stopped by PID.
LABEL=$1; SRC=$2; RUN=$3; OUT=$4
D=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
MPORT=$(python3 -c 'import socket;s=socket.socket(type=socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
PYTHONPATH=$SRC ZVONOK_CONNECT_RATE=10000 ZVONOK_CONNECT_BURST=10000 ZVONOK_MAX_CONNECTIONS_PER_IP=10000 ZVONOK_LOG_LEVEL=WARNING \
  setsid .venv/bin/python -m zvonok serve --host 127.0.0.1 --port $PORT --media-port $MPORT --data-dir $D --announce-ip 127.0.0.1 --log-format json > $D/server.log 2>&1 &
PID=$!
for i in $(seq 1 200); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
echo "$LABEL run $RUN: empty VmRSS $(grep VmRSS /proc/$PID/status)"
.venv/bin/zvonok bench idle-200 --duration 30 --warmup 3 --url http://127.0.0.1:$PORT --data-dir $D --server-pid $PID --json $OUT/$LABEL-idle-200-$RUN.json 2> $OUT/$LABEL-idle-200-$RUN.stderr
kill -TERM $PID; wait $PID
