#!/bin/bash
# one idle-200 run of tree $1 (name $2) under the lock, with perf stat on its server for 10 s
# from 12 s after the server started (the sessions are joined by then)
tree=$1; name=$2
cd /tmp
PYTHONPATH=$tree/src timeout 300 flock /tmp/zvonok-it.lock bash -c "
  /work/main/.venv/bin/python -m zvonok bench idle-200 --duration 30 --json /tmp/h2/perf-$name.json > /tmp/h2/perf-$name.log 2>&1 &
  bench=\$!
  for i in \$(seq 1 100); do
    pid=\$(pgrep -P \$bench -f 'zvonok serve' | head -1)
    [ -n \"\$pid\" ] && break; sleep 0.2
  done
  sleep 14
  perf stat -e task-clock,context-switches,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmsg,syscalls:sys_enter_sendto,syscalls:sys_enter_write -p \$pid -- sleep 10 > /tmp/h2/perf-$name.txt 2>&1
  wait \$bench
"
