#!/bin/sh
# usage: pairs.sh OUTDIR N -- N holds of the integration-test lock per scenario; each hold runs the
# old code and the new one back to back (ABBA order across holds), 1:1 (30 chats) and group.
out=$1; n=$2
mkdir -p $out
cat > $out/pair.sh <<'EOS'
#!/bin/sh
# pair.sh OUT NAME I FIRST SECOND ARGS...: two runs back to back (first, second: before|after)
out=$1; name=$2; i=$3; first=$4; second=$5; shift 5
cd /tmp
for code in $first $second; do
  f=$out/$name-$code-run$i
  nice env PYTHONPATH=/tmp/h2-$code/src /work/main/.venv/bin/python -m zvonok bench "$@" --json $f.json > $f.txt 2>&1
  echo "$(date -u +%H:%M:%S) $f rc=$?"
done
EOS
chmod +x $out/pair.sh
i=1
while [ $i -le $n ]; do
  if [ $((i % 2)) = 1 ]; then a=before; b=after; else a=after; b=before; fi
  flock /tmp/zvonok-it.lock timeout 900 $out/pair.sh $out calls-1to1-x30 $i $a $b calls-1to1-x25 --rooms 30 --duration 5 --warmup 2 --nodes 2
  flock /tmp/zvonok-it.lock timeout 900 $out/pair.sh $out fanout-2x10-r4 $i $b $a fanout-2x10 --rooms 4 --duration 10 --warmup 3 --nodes 2
  i=$((i + 1))
done
