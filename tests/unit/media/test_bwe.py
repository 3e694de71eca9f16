"""The downlink estimator (forwarding/bwe.py) on a simulated bottleneck: a sender pacing at the
estimate, a FIFO link of a given capacity with a bounded queue and propagation delay, random
loss, feedback every 100 ms as a subscriber's browser sends it."""

from __future__ import annotations

import random
from collections.abc import Callable

from zvonok.media.forwarding.bwe import (
    MAX_BPS,
    MIN_BPS,
    START_BPS,
    DownlinkEstimator,
    PacketResult,
    Usage,
)

SIZE = 1200
PROPAGATION_US = 20_000
QUEUE_US = 400_000  # a bottleneck buffer of 400 ms; beyond it packets are dropped


class Link:
    """Sends at the estimate through a bottleneck; returns the estimate over time."""

    def __init__(
        self,
        capacity: Callable[[float], float],
        *,
        loss: float = 0.0,
        reorder: bool = False,
        seed: int = 1,
        media_bps: float | None = None,
        start_bps: int = START_BPS,
    ) -> None:
        self.media_bps = media_bps  # an application-limited sender: this rate, not the estimate
        self.probe_until = -1
        self.probe_bps = 0.0
        self.capacity = capacity
        self.loss = loss
        self.reorder = reorder
        self.rng = random.Random(seed)
        self.estimator = DownlinkEstimator(start_bps)
        self.now = 0
        self.seq = 0
        self.link_free = 0
        self.in_flight: list[PacketResult] = []
        self.next_feedback = 100_000
        self.trace: list[tuple[float, int]] = []  # (seconds, estimate)

    def rate(self) -> float:
        if self.now < self.probe_until:
            return self.probe_bps
        if self.media_bps is not None:
            return self.media_bps
        return float(self.estimator.estimate_bps or START_BPS)

    def probe(self, target_bps: int, seconds: float = 0.1) -> None:
        """Send at ``target_bps`` for ``seconds`` (a probe cluster), then run on."""
        self.estimator.start_probe(self.now, target_bps)
        self.probe_bps = target_bps
        self.probe_until = self.now + int(seconds * 1e6)
        self.run(seconds)
        self.estimator.end_probe(self.now)

    def run(self, seconds: float) -> None:
        end = self.now + int(seconds * 1e6)
        while self.now < end:
            self._send()
            self.now += int(SIZE * 8 / self.rate() * 1e6)
            while self.now >= self.next_feedback:
                self._feedback(self.next_feedback)
                self.next_feedback += 100_000

    def estimate_at(self, seconds: float) -> int:
        return next(e for t, e in reversed(self.trace) if t <= seconds)

    def _send(self) -> None:
        cap = self.capacity(self.now / 1e6)
        start = max(self.now, self.link_free)
        arrival: int | None
        if start - self.now > QUEUE_US:
            arrival = None  # the queue is full: tail drop
        else:
            self.link_free = start + int(SIZE * 8 / cap * 1e6)
            arrival = self.link_free + PROPAGATION_US
            if self.rng.random() < self.loss:
                arrival = None
        self.in_flight.append(PacketResult(self.seq & 0xFFFF, self.now, SIZE, arrival))
        self.seq += 1

    def _feedback(self, at: int) -> None:
        # a packet is reported once it arrived (or, lost, once a later one arrived)
        due = [p for p in self.in_flight if (p.arrival_us or p.send_us + PROPAGATION_US) <= at]
        if not due:
            return
        self.in_flight = [p for p in self.in_flight if p not in due]
        if self.reorder:
            for i in range(0, len(due) - 1, 5):
                a, b = due[i], due[i + 1]
                if a.arrival_us is not None and b.arrival_us is not None:  # swap arrivals
                    due[i] = PacketResult(a.seq, a.send_us, a.size, b.arrival_us)
                    due[i + 1] = PacketResult(b.seq, b.send_us, b.size, a.arrival_us)
        self.estimator.on_feedback(due, at + PROPAGATION_US)
        estimate = self.estimator.estimate_bps
        if estimate is not None:
            self.trace.append((at / 1e6, estimate))


def test_no_estimate_before_feedback() -> None:
    estimator = DownlinkEstimator()
    assert estimator.estimate_bps is None and estimator.loss == 0.0 and estimator.rtt is None
    estimator.on_feedback([], 0)
    assert estimator.estimate_bps is None


def test_steady_link_converges_near_capacity() -> None:
    link = Link(lambda t: 2_000_000)
    link.run(40)
    late = [e for t, e in link.trace if t > 20]
    mean = sum(late) / len(late)
    assert 1_400_000 <= mean <= 2_400_000, mean
    assert min(late) >= 1_000_000
    assert link.estimator.loss < 0.05


def test_a_fast_link_climbs_to_it() -> None:
    link = Link(lambda t: 6_000_000)
    link.run(25)
    assert link.estimate_at(25) >= 4_000_000


def test_capacity_drop_decreases_within_a_second() -> None:
    link = Link(lambda t: 3_000_000 if t < 20 else 500_000)
    link.run(20)
    before = link.estimate_at(20)
    assert before >= 1_800_000
    link.run(1.2)
    assert link.estimate_at(21.2) <= 0.7 * before
    link.run(5)
    assert link.estimate_at(26) <= 700_000


def test_recovery_after_the_limit_is_lifted() -> None:
    link = Link(lambda t: 400_000 if t < 15 else 3_000_000)
    link.run(15)
    low = link.estimate_at(15)
    assert low <= 550_000
    link.run(15)
    assert link.estimate_at(30) >= 3 * low


def test_random_loss_of_20_percent_decreases() -> None:
    link = Link(lambda t: 8_000_000, loss=0.2)
    link.run(6)
    assert 0.1 <= link.estimator.loss <= 0.3
    assert link.estimate_at(6) < START_BPS * 0.5


def test_small_loss_does_not_stop_growth() -> None:
    link = Link(lambda t: 8_000_000, loss=0.01)
    link.run(10)
    assert link.estimate_at(10) > START_BPS * 1.5


def test_reordering_is_not_congestion() -> None:
    link = Link(lambda t: 2_000_000, reorder=True)
    link.run(30)
    late = [e for t, e in link.trace if t > 15]
    assert sum(late) / len(late) >= 1_200_000


def test_growing_queueing_delay_signals_overuse() -> None:
    estimator = DownlinkEstimator()
    usages = set()
    send = arrival = 0
    for feedback in range(30):
        batch = []
        for i in range(20):
            send += 5_000
            arrival += 5_500 if feedback >= 10 else 5_000  # from 10: 0.5 ms more per packet
            batch.append(PacketResult(feedback * 20 + i, send, 300, arrival + 40_000))
        estimator.on_feedback(batch, send + 60_000)
        usages.add(estimator.usage)
        if feedback == 9:
            steady = estimator.estimate_bps
    assert Usage.OVERUSE in usages
    # 480 kbit/s sent, ~440 kbit/s acknowledged: down to 0.85 of that
    assert steady is not None and (estimator.estimate_bps or 0) <= 0.85 * 480_000 < steady


def test_bounds_and_rtt() -> None:
    link = Link(lambda t: 50_000_000)
    link.run(60)
    assert link.estimate_at(60) <= MAX_BPS
    rtt = link.estimator.rtt
    assert rtt is not None and 0.02 <= rtt <= 0.2
    starved = Link(lambda t: 20_000)
    starved.run(20)
    assert starved.estimate_at(20) >= MIN_BPS


def test_an_application_limited_sender_needs_probes_to_climb() -> None:
    link = Link(lambda t: 3_000_000, media_bps=150_000, start_bps=200_000)
    link.run(10)
    capped = link.estimate_at(10)
    assert capped <= 300_000 and link.estimator.app_limited  # 1.5 x acknowledged + 10k
    probes = []
    for _ in range(3):  # probe at twice the estimate, once a second
        target = 2 * (link.estimator.estimate_bps or 0)
        link.probe(target)
        link.run(0.7)
        probes.append(link.estimator.probe_result)
    assert all(p is not None and p[0] >= 0.8 * p[1] for p in probes), probes
    assert not link.estimator.probe_limited  # the link carried them as fast as they were sent
    assert (link.estimator.estimate_bps or 0) >= 6 * capped >= 1_400_000
    link.run(5)  # the estimate is not cut back to the forwarded rate's cap
    assert (link.estimator.estimate_bps or 0) >= 1_400_000


def test_a_probe_beyond_the_link_measures_the_link() -> None:
    link = Link(lambda t: 600_000, media_bps=150_000, start_bps=200_000)
    link.run(5)
    link.probe(2_000_000)
    link.run(1.5)
    result = link.estimator.probe_result
    assert result is not None and 450_000 <= result[0] <= 700_000, result
    assert link.estimator.probe_limited
    assert (link.estimator.estimate_bps or 0) <= 700_000


def test_paused_video_keeps_an_estimate_that_can_resume_it() -> None:
    # 300 kbit/s link, the sender at the estimate (congesting it), then only audio (40 kbit/s)
    link = Link(lambda t: 300_000)
    link.run(15)
    assert link.estimator.last_decrease_us is not None
    link.media_bps = 40_000
    link.run(10)
    estimate = link.estimate_at(25)
    assert 220_000 <= estimate <= 300_000, estimate  # back near what the link carried
    assert link.estimator.app_limited
    assert 280_000 <= (link.estimator.capacity_bps(link.now) or 0) <= 320_000
    link.run(70)  # the memory fades: no growth beyond what is sent any more
    assert link.estimate_at(95) <= estimate and link.estimator.capacity_bps(link.now) is None


def test_heavy_loss_from_an_overfull_link_stops_at_what_gets_through() -> None:
    """A sender that keeps sending 1.5 Mbit/s (the layer it is on) into a 300 kbit/s link loses
    ~80 %: the loss-based decrease stops at LOSS_FLOOR_SHARE x the acknowledged rate instead of
    halving down to the floor of the estimator (it reached ~40 kbit/s in 2.5 s)."""
    link = Link(lambda t: 300_000, media_bps=1_500_000)
    link.run(4)
    assert link.estimator.loss > 0.5
    assert min(e for t, e in link.trace if 2 <= t <= 4) >= 150_000
