#!/bin/bash
# one idle-200 run of tree $1 under the lock with py-spy on its server for 20 s
tree=$1; name=$2
cd /tmp
PYTHONPATH=$tree/src timeout 300 flock /tmp/zvonok-it.lock bash -c "
  /work/main/.venv/bin/python -m zvonok bench idle-200 --duration 30 --json /tmp/h2/spy-$name.json > /tmp/h2/spy-$name.log 2>&1 &
  bench=\$!
  for i in \$(seq 1 100); do
    pid=\$(pgrep -P \$bench -f 'zvonok serve' | head -1)
    [ -n \"\$pid\" ] && break; sleep 0.2
  done
  sleep 12
  /work/main/.venv/bin/py-spy record -p \$pid -d 20 -r 250 -f raw -o /tmp/h2/spy-$name.txt --nonblocking > /tmp/h2/spy-$name.err 2>&1
  wait \$bench
"
