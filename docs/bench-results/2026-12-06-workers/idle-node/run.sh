# Run under the integration lock: flock /tmp/zvonok-it.lock bash run.sh > out.txt (2026-12-06, 02:50-02:53 UTC).
# PYTHONPATH: the same git-archive snapshot of 5ce88ab as ../run.sh (SRC).
cd /tmp
for r in 1 2 3; do
  for w in 1 2; do
    PYTHONPATH=/tmp/zvb-snap/src timeout 120 /work/main/.venv/bin/python /tmp/zvb-idle/idle.py $w
  done
done
