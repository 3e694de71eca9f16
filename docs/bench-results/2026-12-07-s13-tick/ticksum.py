"""Summarize a tick log of the instrumented MediaWorker.tick: p50/p90 of the whole tick and of
each callback (ms), for ticks that ran the rooms' callbacks; per room = / ROOMS."""
import statistics, sys
ROOMS = 25
for path in sys.argv[1:]:
    rows = []
    for line in open(path):
        parts = line.split()
        if "RoomAdaptation.tick=" not in line:
            continue
        d = {"total": float(parts[0])}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            d[k] = float(v)
        rows.append(d)
    def q(k, f):
        xs = sorted(r.get(k, 0.0) for r in rows)
        return xs[int(f * (len(xs) - 1))]
    print(f"{path}: {len(rows)} ticks")
    for k in ("total", "RoomAdaptation.tick", "Router.tick", "QualityMonitor.tick"):
        print(f"  {k:22s} p50 {q(k, .5):6.3f} ms  p90 {q(k, .9):6.3f} ms  per room p50 {1000*q(k, .5)/ROOMS:6.1f} µs")
