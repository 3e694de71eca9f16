"""Session 15: RtpDispatcher.dispatch alone (docs/benchmarks.md Round 19).

A compiled dispatcher with two SSRCs (a publisher's audio and video, alternating) whose handler
is the builtin ``len`` (nothing per packet but the call), 2 x 10^6 dispatches through the Python
method; ns per dispatch over REPS slices (process_time).

    PYTHONPATH=<tree>/src python dispatch_micro.py [COUNT] [REPS]   (default 1000000 5)
"""
import json, statistics, struct, sys, time
from zvonok.media.fastpath import native

count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
audio, video = 0x5EED_A0D1, 0x7A1D_E0B2
d = native.RtpDispatcher({audio: len, video: len}, lambda s, p: None)
packets = [struct.pack("!BBHII", 0x80, 111, 1, 960, ssrc) + bytes(100) for ssrc in (audio, video)]
dispatch = d.dispatch
a_pkt, v_pkt = packets
slices = []
for _ in range(reps):
    t = time.process_time_ns()
    for _ in range(count):
        dispatch(a_pkt)
        dispatch(v_pkt)
    slices.append(round((time.process_time_ns() - t) / (2 * count), 1))
print(json.dumps({"ns_per_dispatch": slices, "min": min(slices), "median": statistics.median(slices)}))
