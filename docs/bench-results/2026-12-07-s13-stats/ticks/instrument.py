# --- scratch instrumentation (never committed) ---
import time as _t

_orig_tick = QualityMonitor.tick
_orig_measure = QualityMonitor.measure
_n = [0]


def _measure(self, *a, **k):  # type: ignore[no-untyped-def]
    _n[0] += 1
    return _orig_measure(self, *a, **k)


def _tick(self, now):  # type: ignore[no-untyped-def]
    _n[0] = 0
    t0 = _t.perf_counter()
    _orig_tick(self, now)
    d = _t.perf_counter() - t0
    with open("/tmp/h2-ia/ticks.txt", "a") as f:
        f.write(f"{_n[0]} {d*1e6:.0f}\n")


QualityMonitor.measure = _measure
QualityMonitor.tick = _tick
