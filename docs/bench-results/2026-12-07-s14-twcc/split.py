"""Where the rest of a feedback's time goes after issue 17 (session 14): the same feedback as
``twcc_cost.py``'s stream (200 packets/s: 30 frames/s of 4-6 video packets 1 ms apart, 50
audio packets/s; 1 % lost, 0-1 ms jitter; feedback every 100 ms, ~20 statuses) fed to a compiled
``Downlink``'s parts one at a time, each timed over all feedbacks (medians of 9 runs, µs per
feedback): ``parse_compound``; ``FeedbackCore.feed`` (the per-packet part in C) with a Python
history object, so one ``twcc_lookup`` call per seq that a compiled ``SendTarget`` does not
make, timed apart as ``lookups`` (feed - lookups: the C's own work); ``on_summary`` (the
decisions in Python), of which the ``_detect`` calls (one per closed send group); and the
pure-Python ``FeedbackAdapter.results`` + ``DownlinkEstimator.on_feedback`` it replaces (with the
same history).
Run from the repository root under the integration lock, with the compiled fast path built.
"""

from __future__ import annotations

import random
import statistics
import time
from typing import Any

from zvonok.media.fastpath import native
from zvonok.media.forwarding.bwe import (
    ACKED_WINDOW_US,
    BURST_US,
    DownlinkEstimator,
    PacketResult,
)
from zvonok.media.forwarding.twcc import FeedbackAdapter, FeedbackBuilder
from zvonok.media.packets.rtcp import TransportFeedback, parse_compound


def main() -> None:
    assert native is not None, "build the fast path first"
    rng = random.Random(17)
    events: list[tuple[int, int]] = []  # (send µs, size): twcc_cost.py's schedule, 20 s
    for f in range(600):
        n = rng.randint(4, 6)
        for k in range(n):
            size = 1_100 if k < n - 1 else rng.randint(300, 1_100)
            events.append((1_000_000 + f * 1_000_000 // 30 + k * 1_000, size))
    events += [(1_000_500 + a * 20_000, 100) for a in range(1_000)]
    events.sort()
    sent: dict[int, tuple[int, int]] = {}
    arrivals: list[tuple[int, int]] = []
    for seq, (t, size) in enumerate(events):
        sent[seq & 0xFFFF] = (t, size)
        if rng.random() >= 0.01:
            arrivals.append((seq & 0xFFFF, t + 25_000 + rng.randint(0, 1_000)))
    arrivals.sort(key=lambda a: a[1])
    builder = FeedbackBuilder(1)
    raw: list[tuple[int, bytes]] = []
    batch: list[tuple[int, int]] = []
    edge = arrivals[0][1] + 100_000
    for seq, at in arrivals:
        if at >= edge:
            raw += [(edge + 25_000, bytes(fb)) for fb in builder.build(batch, 2)]
            batch, edge = [], edge + 100_000
        batch.append((seq, at))

    class History:
        def twcc_lookup(self, seq: int) -> tuple[int, int] | None:
            return sent.get(seq)

    history = History()
    fbs = [(now, p) for now, data in raw for p in parse_compound(data)]
    kinds = ("parse", "feed", "lookups", "on_summary", "detect", "python")
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(9):
        t0 = time.perf_counter_ns()
        for _, data in raw:
            parse_compound(data)
        times["parse"].append((time.perf_counter_ns() - t0) / len(raw) / 1e3)
        t0 = time.perf_counter_ns()
        for _, fb in fbs:
            assert isinstance(fb, TransportFeedback)
            for i in range(len(fb.deltas)):
                history.twcc_lookup((fb.base_seq + i) & 0xFFFF)
        times["lookups"].append((time.perf_counter_ns() - t0) / len(fbs) / 1e3)
        core: Any = native.FeedbackCore(BURST_US, ACKED_WINDOW_US)
        est = DownlinkEstimator()
        detect_ns = [0, 0]  # ns, calls
        original = est._detect

        def timed(*args: float, original: Any = original, detect_ns: list[int] = detect_ns) -> None:
            t1 = time.perf_counter_ns()
            original(*args)
            detect_ns[0] += time.perf_counter_ns() - t1
            detect_ns[1] += 1

        est._detect = timed  # type: ignore[method-assign,assignment]
        feed = summary = 0
        for now, fb in fbs:
            assert isinstance(fb, TransportFeedback)
            t0 = time.perf_counter_ns()
            out = core.feed(fb.base_seq, fb.reference_time, fb.deltas, history, False)
            t1 = time.perf_counter_ns()
            if out is not None:
                received, lost, newest, acked, groups, packets = out
                res = None if packets is None else [PacketResult._make(p) for p in packets]
                est.on_summary(received, lost, newest, acked, groups, res, now)
            t2 = time.perf_counter_ns()
            feed += t1 - t0
            summary += t2 - t1
        times["feed"].append(feed / len(fbs) / 1e3)
        times["on_summary"].append(summary / len(fbs) / 1e3)
        times["detect"].append(detect_ns[0] / len(fbs) / 1e3)
        groups = detect_ns[1] / len(fbs)
        adapter = FeedbackAdapter(history.twcc_lookup)
        ref = DownlinkEstimator()
        t0 = time.perf_counter_ns()
        for now, fb in fbs:
            assert isinstance(fb, TransportFeedback)
            results = adapter.results(fb)
            if results:
                ref.on_feedback(results, now)
        times["python"].append((time.perf_counter_ns() - t0) / len(fbs) / 1e3)
        assert (ref.estimate_bps, ref.loss, ref.acked_bps) == (est.estimate_bps, est.loss,
                                                               est.acked_bps)  # fmt: skip
    statuses = statistics.mean(len(fb.deltas) for _, fb in fbs if isinstance(fb, TransportFeedback))
    print(f"{len(fbs)} feedbacks, {statuses:.1f} statuses each, {groups:.1f} send groups "
          f"closed each; µs per feedback, median of 9 (min-max):")  # fmt: skip
    for kind, values in times.items():
        print(
            f"  {kind:10s} {statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"
        )


if __name__ == "__main__":
    main()
