"""Where a feedback's time goes after the delay-based detector moved to C (issue 17, session
15): session 14's ``split.py`` (``../2026-12-07-s14-twcc/``) with the detector timed apart. The
same feedback as ``twcc_cost.py``'s stream (200 packets/s: 30 frames/s of 4-6 video packets 1 ms
apart, 50 audio packets/s; 1 % lost, 0-1 ms jitter; feedback every 100 ms, ~20 statuses) fed to
a compiled ``Downlink``'s parts one at a time, each timed over all feedbacks (medians of 9 runs,
µs per feedback): ``parse_compound``; ``FeedbackCore.feed`` (the per-packet part in C) with a
Python history object, so one ``twcc_lookup`` call per seq that a compiled ``SendTarget`` does
not make, timed apart as ``lookups``; ``on_summary`` with the compiled ``Trendline`` and with
the Python ``_Trendline`` (``compiled=False``); the detectors' ``detect`` alone on the same
groups (``detect C``, ``detect py``); and the pure-Python ``FeedbackAdapter.results`` +
``DownlinkEstimator.on_feedback`` (with the Python detector, the same history). Every run checks
that the compiled and the Python estimators end with the same estimate, trend and threshold.
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
    _new_trendline,
)
from zvonok.media.forwarding.twcc import FeedbackAdapter, FeedbackBuilder
from zvonok.media.packets.rtcp import TransportFeedback, parse_compound


def main() -> None:
    assert native is not None and hasattr(native, "Trendline"), "build the fast path first"
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
    kinds = ("parse", "feed", "lookups", "on_summary", "on_summary py", "detect C", "detect py",
             "python")  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in kinds}
    group_lists: list[list[tuple[float, float, float]]] = []
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
        for label, compiled in (("on_summary", True), ("on_summary py", False)):
            core: Any = native.FeedbackCore(BURST_US, ACKED_WINDOW_US)
            est = DownlinkEstimator(compiled=compiled)
            feed = summary = 0
            group_lists = []
            for now, fb in fbs:
                assert isinstance(fb, TransportFeedback)
                t0 = time.perf_counter_ns()
                out = core.feed(fb.base_seq, fb.reference_time, fb.deltas, history, False)
                t1 = time.perf_counter_ns()
                if out is not None:
                    received, lost, newest, acked, groups, packets = out
                    res = None if packets is None else [PacketResult._make(p) for p in packets]
                    est.on_summary(received, lost, newest, acked, groups, res, now)
                    group_lists.append(groups)
                t2 = time.perf_counter_ns()
                feed += t1 - t0
                summary += t2 - t1
            if compiled:
                times["feed"].append(feed / len(fbs) / 1e3)
                result = (est.estimate_bps, est.trend, est.threshold, est.usage)
            else:
                assert (est.estimate_bps, est.trend, est.threshold, est.usage) == result
            times[label].append(summary / len(fbs) / 1e3)
        for label, compiled in (("detect C", True), ("detect py", False)):
            detector = _new_trendline(compiled)
            t0 = time.perf_counter_ns()
            for groups in group_lists:
                detector.detect(groups)
            times[label].append((time.perf_counter_ns() - t0) / len(fbs) / 1e3)
        adapter = FeedbackAdapter(history.twcc_lookup)
        ref = DownlinkEstimator(compiled=False)
        t0 = time.perf_counter_ns()
        for now, fb in fbs:
            assert isinstance(fb, TransportFeedback)
            results = adapter.results(fb)
            if results:
                ref.on_feedback(results, now)
        times["python"].append((time.perf_counter_ns() - t0) / len(fbs) / 1e3)
        assert (ref.estimate_bps, ref.trend, ref.threshold) == result[:3]
    statuses = statistics.mean(len(fb.deltas) for _, fb in fbs if isinstance(fb, TransportFeedback))
    groups_each = sum(len(g) for g in group_lists) / len(fbs)
    print(f"{len(fbs)} feedbacks, {statuses:.1f} statuses each, {groups_each:.1f} send groups "
          f"closed each; µs per feedback, median of 9 (min-max):")  # fmt: skip
    for kind, values in times.items():
        print(
            f"  {kind:13s} {statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"
        )


if __name__ == "__main__":
    main()
