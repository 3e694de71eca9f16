#!/bin/sh
# usage: quads.sh OUTDIR FROM TO PER_HOLD -- iterations FROM..TO; each iteration: the 1:1 pair and the
# group pair (old and new code back to back, ABBA across iterations); PER_HOLD iterations per hold
out=$1; from=$2; to=$3; per=$4
cat > $out/iter.sh <<'EOS'
#!/bin/sh
# iter.sh OUT I [I...]: for each iteration I, the 1:1 pair then the group pair
out=$1; shift
for i in "$@"; do
  if [ $((i % 2)) = 1 ]; then a=before; b=after; else a=after; b=before; fi
  $out/pair.sh $out calls-1to1-x30 $i $a $b calls-1to1-x25 --rooms 30 --duration 5 --warmup 2 --nodes 2
  $out/pair.sh $out fanout-2x10-r4 $i $b $a fanout-2x10 --rooms 4 --duration 10 --warmup 3 --nodes 2
done
EOS
chmod +x $out/iter.sh
i=$from
while [ $i -le $to ]; do
  its=""; k=0
  while [ $k -lt $per ] && [ $i -le $to ]; do its="$its $i"; i=$((i + 1)); k=$((k + 1)); done
  flock /tmp/zvonok-it.lock timeout 900 $out/iter.sh $out $its
done
