"""Session 15: the producer core's part alone (docs/benchmarks.md Round 19).

50 compiled ProducerCores (a 512-packet history each: the compiled PacketRing when the tree has
one, else the list of bytes the core filled before; an empty Fanout), fed round-robin one new
1,012-byte bytes object each (made from a bytearray, as the Receiver makes one per decrypted
packet), so 50 x 512 packets (~26 MB) are kept as in a busy node. After WARM rounds (every ring
full) the CPU time (process_time) of the rest is reported per packet over REPS slices.

    PYTHONPATH=<tree>/src python core_micro.py [ROUNDS] [REPS]   (default 3000 6)
"""
import json, statistics, sys, time
from zvonok.media.fastpath import native
from zvonok.media.forwarding.stats import ReceiveStats

PEERS, WARM = 50, 600
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 6
ring_kind = "PacketRing" if hasattr(native, "PacketRing") else "list"
cores = []
for i in range(PEERS):
    fan = native.Fanout()
    ring = native.PacketRing(512) if ring_kind == "PacketRing" else [None] * 512
    cores.append((native.ProducerCore(ReceiveStats(90000), {}, ring, fan, lambda s, g, n: None, lambda p: False, None).receive, ring))
buf = bytearray(b"\x80\x60" + bytes(10) + bytes(1000))
receives = [c[0] for c in cores]
def run(first, last):
    for r in range(first, last):
        buf[2] = (r >> 8) & 0xFF; buf[3] = r & 0xFF
        for receive in receives:
            receive(bytes(buf))
run(1, WARM)
step = (rounds - WARM) // reps
slices = []
for k in range(reps):
    a = time.process_time_ns()
    run(WARM + k * step, WARM + (k + 1) * step)
    slices.append(round((time.process_time_ns() - a) / (step * PEERS), 1))
print(json.dumps({"ring": ring_kind, "ns_per_pkt": slices, "min": min(slices), "median": statistics.median(slices)}))
