"""Join phases (WebSocket open -> joined -> SRTP ready -> first packet) for --workers 1 vs 2; out of tree.

Session 10: also the signaling leg alone (WebSocket open -> the joined message, to_joined_p50)."""
import asyncio, json, statistics, sys, time
import uvloop
import zvonok.bench.runner as R

class StampedEvent(asyncio.Event):
    at = 0
    def set(self) -> None:
        if not self.at:
            self.at = time.perf_counter_ns()
        super().set()

async def _join(clients, report):
    async def join(c):
        c.leg.connected = StampedEvent()
        await c.start()
        await asyncio.wait_for(c.connected.wait(), 20.0)
    await R.each(clients, join)

orig = R.measure
async def measure(s, rc, clients, late, *a, **k):
    res = await orig(s, rc, clients, late, *a, **k)
    res["phases"] = [((c.leg.connected.at - c.ws_open_ns) / 1e6, (c.first_rx_ns - c.leg.connected.at) / 1e6, (c.joined_ns - c.ws_open_ns) / 1e6) for c in late if c.first_rx_ns and c.joined_ns]
    return res

R._join, R.measure = _join, measure
scenario, workers, rooms = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
res = uvloop.run(R.run_bench(scenario, duration=2, rooms=rooms, url=None, data_dir=None, server_pid=None, warmup=0.5, progress=lambda l: None, workers=workers))
ph = res["phases"]
out = {"scenario": scenario, "workers": workers, "rooms": rooms, "join_p50": res["join_ms"]["p50"],
       "to_srtp_p50": statistics.median(p[0] for p in ph), "srtp_to_rx_p50": statistics.median(p[1] for p in ph), "to_joined_p50": statistics.median(p[2] for p in ph), "n": len(ph)}
print(json.dumps(out))
