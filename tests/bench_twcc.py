"""Micro-benchmark of transport-wide CC's cost (not a test; not collected by pytest).

Usage: ``.venv/bin/python tests/bench_twcc.py [FANOUT ...]``.
1. The hot path of ``zvonok.bench.hotpath`` (datagram in → SRTP unprotect → producer → compiled
   fan-out → rewrite, SRTP protect, ``sendmmsg``), with a transport-cc element in every packet,
   once with transport-cc off and once with the publisher's arrivals recorded and every
   subscriber's copies stamped: µs of CPU per copy, medians of 9, interleaved.
2. Feedback in Python at 280 packets/s (about 2.5 Mbit/s of video) and 10 feedback packets/s:
   reading a subscriber's (parse, pairing with the send history, estimator) and building a
   publisher's, in ms of CPU per second of call.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from zvonok.bench.hotpath import measure_hotpath
from zvonok.media.forwarding.twcc import Downlink, FeedbackBuilder
from zvonok.media.packets.rtcp import TransportFeedback, parse_compound


class _History:
    def __init__(self) -> None:
        self.sent: dict[int, tuple[int, int]] = {}

    def set_twcc_receive(self, ext_id: int) -> None:
        pass

    def set_twcc_send(self, ext_id: int) -> None:
        pass

    def twcc_lookup(self, seq: int) -> tuple[int, int] | None:
        return self.sent.get(seq)


class _Route:
    on_transport_feedback: Any = None


def feedback_cost(seconds: int = 60, per_feedback: int = 28) -> tuple[float, float]:
    """(ms CPU per subscriber-second reading feedback, ms per publisher-second building it)."""
    history = _History()
    now = [0]
    downlink = Downlink(history, _Route(), clock_us=lambda: now[0])
    downlink.probing = False
    spacing = 1_000_000 // (10 * per_feedback)
    raw = []
    for k in range(seconds * 10):
        base = k * per_feedback
        for s in range(base, base + per_feedback):
            history.sent[s & 0xFFFF] = (s * spacing, 1150)
        arrivals: list[int | None] = [
            s * spacing + 20_000 for s in range(base, base + per_feedback)
        ]
        raw.append(bytes(TransportFeedback.build(1, 2, k, base & 0xFFFF, arrivals)))
    start = time.process_time()
    for k, data in enumerate(raw):
        now[0] = (k + 1) * per_feedback * spacing + 40_000
        (fb,) = parse_compound(data)
        assert isinstance(fb, TransportFeedback)
        downlink.on_feedback(fb)
    reading = (time.process_time() - start) / seconds
    builder = FeedbackBuilder(1)
    batches = [
        [((k * per_feedback + i) & 0xFFFF, (k * per_feedback + i) * spacing)
         for i in range(per_feedback)]
        for k in range(seconds * 10)
    ]  # fmt: skip
    start = time.process_time()
    for batch in batches:
        for fb in builder.build(batch, 5):
            bytes(fb)
    building = (time.process_time() - start) / seconds
    return reading * 1e3, building * 1e3


async def main(fanouts: list[int]) -> None:
    for fanout in fanouts:
        off: list[float] = []
        on: list[float] = []
        for _ in range(9):
            off.append(await measure_hotpath(fanout, twcc_element=True))
            on.append(await measure_hotpath(fanout, twcc=True))
        off.sort()
        on.sort()
        print(
            f"fan-out {fanout:2d}: transport-cc off {off[4]:.3f} µs per copy, on {on[4]:.3f} "
            f"({on[4] - off[4]:+.3f}; minima {off[0]:.3f} / {on[0]:.3f})"
        )
    reading, building = feedback_cost()
    print(
        f"feedback at 280 packets/s: reading {reading:.2f} ms CPU per subscriber-second, "
        f"building {building:.2f} ms per publisher-second"
    )


if __name__ == "__main__":
    asyncio.run(main([int(a) for a in sys.argv[1:]] or [1, 3, 21]))
