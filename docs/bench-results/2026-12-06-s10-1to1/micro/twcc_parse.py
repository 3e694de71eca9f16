"""µs of CPU to parse one transport-cc feedback (the FCI), pure Python vs compiled: a feedback
about 30 packets (what a browser subscriber sends every ~50-100 ms at ~300-600 packets/s), all
received, small deltas, plus one with losses and a large delta; median of 5 runs of 20,000."""
import statistics, time
from zvonok.media.fastpath import native
from zvonok.media.packets.rtcp import TransportFeedback, parse_twcc_fci
times = [1_000_000 + i * 3_000 for i in range(30)]
lossy = [t if i % 7 else None for i, t in enumerate(times)]
lossy[20] = times[20] + 90_000
N = 20000
for name, arr in (("30 received", times), ("30, lossy", lossy)):
    fci = bytes(TransportFeedback.build(1, 2, 0, 100, arr))[12:]
    res = {}
    for label, fn in (("python", parse_twcc_fci), ("compiled", native.twcc_parse)):
        runs = []
        for _ in range(5):
            t0 = time.process_time()
            for _ in range(N):
                fn(fci)
            runs.append((time.process_time() - t0) / N * 1e6)
        res[label] = round(statistics.median(runs), 2)
    print(name, len(fci), "bytes FCI:", res)
