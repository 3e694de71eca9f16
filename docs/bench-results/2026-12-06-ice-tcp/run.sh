#!/bin/sh
# The batch behind "ICE-TCP" in docs/benchmarks.md: fanout-2x20 and mesh-4, UDP and ICE-TCP
# interleaved, 3 passes, each run under the integration-test lock. drive.py calls run_bench
# exactly as `zvonok bench SCENARIO --duration 10 --warmup 2 [--tcp]` does.
for i in 1 2 3; do for sc in fanout-2x20 mesh-4; do for mode in udp tcp; do
  flock /tmp/zvonok-it.lock timeout 300 python docs/bench-results/2026-12-06-ice-tcp/drive.py "$sc" "$mode" 10 "$i"
done; done; done
