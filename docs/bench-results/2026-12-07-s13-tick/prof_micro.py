import cProfile, pstats, sys, time
sys.argv = ["x", "25", "20", "1"]
sys.path.insert(0, "docs/bench-results/2026-12-06-s11-1to1/micro")
import tick_micro as tm
from zvonok.media.forwarding.router import Router
clock = tm.FakeClock()
calls = [tm.Call(n, clock, None) for n in range(25)]
def step():
    clock.now += 0.25
    for c in calls: c.feed(0.25)
for _ in range(8):
    step()
    for c in calls: c.router.tick(clock.now); c.adaptation.tick(clock.now)
pr = cProfile.Profile()
for _ in range(80):
    step()
    pr.enable()
    for c in calls: c.router.tick(clock.now)
    for c in calls: c.adaptation.tick(clock.now)
    pr.disable()
st = pstats.Stats(pr); st.sort_stats("tottime").print_stats(35)
st.sort_stats("cumulative").print_stats(40)
