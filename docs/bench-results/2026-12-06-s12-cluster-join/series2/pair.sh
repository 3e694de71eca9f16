#!/bin/sh
# pair.sh OUT NAME I FIRST SECOND ARGS...: two runs back to back (first, second: before|after)
out=$1; name=$2; i=$3; first=$4; second=$5; shift 5
cd /tmp
for code in $first $second; do
  f=$out/$name-$code-run$i
  nice env PYTHONPATH=/tmp/h2-$code/src /work/main/.venv/bin/python -m zvonok bench "$@" --json $f.json > $f.txt 2>&1
  echo "$(date -u +%H:%M:%S) $f rc=$?"
done
