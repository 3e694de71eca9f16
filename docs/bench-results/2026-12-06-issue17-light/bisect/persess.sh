#!/bin/sh
# persess.sh COMMIT: idle-200 (5 s window) against the server of COMMIT (archive + today's .so); prints kB/session
C=$1; S=/tmp/bis/$C
cd /work/main
if [ ! -d $S ]; then mkdir -p $S && git archive $C src | tar -x -C $S && cp src/zvonok/media/_fastpath.cpython-311-x86_64-linux-gnu.so $S/src/zvonok/media/; fi
D=$(mktemp -d)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
MPORT=$(python3 -c 'import socket;s=socket.socket(type=socket.SOCK_DGRAM);s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
PYTHONPATH=$S/src ZVONOK_CONNECT_RATE=10000 ZVONOK_CONNECT_BURST=10000 ZVONOK_MAX_CONNECTIONS_PER_IP=10000 ZVONOK_LOG_LEVEL=WARNING \
  setsid .venv/bin/python -m zvonok serve --host 127.0.0.1 --port $PORT --media-port $MPORT --data-dir $D --announce-ip 127.0.0.1 --log-format json > $D/server.log 2>&1 &
PID=$!
for i in $(seq 1 200); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1
.venv/bin/zvonok bench idle-200 --duration 5 --warmup 3 --url http://127.0.0.1:$PORT --data-dir $D --server-pid $PID 2>/dev/null | grep "server RSS\|server CPU" | tr '\n' ' ' | sed "s/^/$C: /"; echo
kill -TERM $PID; sleep 0.5; kill -TERM $PID 2>/dev/null; wait $PID
