"""A subscriber's downlink estimate from transport-wide congestion control feedback.

Owns ``DownlinkEstimator``, a sender-side estimator in the spirit of Google congestion control
(draft-ietf-rmcat-gcc-02): the delay-based controller of §5 — packets grouped by send time
(§5.2, 5 ms bursts), the inter-group delay variation smoothed into a trendline whose slope is
compared with an adaptive threshold (§5.4, the trendline filter replacing §5.3's Kalman filter as
today's GoogCC does), an overuse / normal / underuse signal driving an AIMD rate controller
(§5.5) — and the loss-based controller of §6, the estimate being the smaller of the two. Input:
``PacketResult``s (send time, size, arrival time or lost) that ``twcc.FeedbackAdapter`` makes of
the subscriber's ``TransportFeedback`` (``on_feedback``: its per-packet steps, then
``on_summary``), or, with the compiled fast path, the per-feedback summary
``_fastpath.FeedbackCore`` computes from it (``on_summary`` alone: the decisions stay here, but
for the delay-based detector on the closed send groups — ``_Trendline``: trendline, overuse
detector, adaptive threshold — which runs compiled as ``_fastpath.Trendline`` when the fast path
is built, exactly as the reference). Probe clusters (``start_probe``/``end_probe``: extra
packets the sender adds for a few hundred milliseconds while the forwarded rate is below what the
link may carry) are measured as GoogCC's probe estimator does and raise the estimate to what the
link delivered. The algorithm and its constants are written down in
docs/media.md, "Congestion control (transport-wide CC)". Pure computation: no I/O, no clock of its
own (every call carries ``now``, µs).
Must not import anything from zvonok outside ``zvonok.media``.
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum
from typing import NamedTuple, Protocol

from ..fastpath import native

#: The estimate before any feedback has moved it (a typical start, as browsers use 300 kbit/s
#: to 1 Mbit/s), and its bounds.
START_BPS = 1_000_000
MIN_BPS = 30_000
MAX_BPS = 10_000_000

#: §5.2: packets sent within this span form one group.
BURST_US = 5_000
#: Trendline filter: points in the regression window, smoothing of the accumulated delay,
#: gain applied to the slope before comparing with the threshold.
TREND_WINDOW = 20
TREND_SMOOTHING = 0.9
TREND_GAIN = 4.0
#: The slope counts as if over at most this many groups (a young trendline weighs less).
TREND_MAX_DELTAS = 60
#: §5.4 adaptive threshold (ms): start, gains up and down, bounds, and the jump ignored.
THRESHOLD_START = 12.5
THRESHOLD_K_UP = 0.0087
THRESHOLD_K_DOWN = 0.039
THRESHOLD_MIN, THRESHOLD_MAX = 6.0, 600.0
THRESHOLD_MAX_JUMP = 15.0
#: The threshold adapts over at most this long (ms) per update.
THRESHOLD_MAX_DT_MS = 100.0
#: Overuse must last this long (ms) and over this many groups before it is signalled.
OVERUSE_TIME_MS = 10.0
OVERUSE_COUNT = 1
#: §5.5: decrease to this share of the acknowledged rate; multiplicative increase per second far
#: from convergence; the estimate never exceeds this multiple of the acknowledged rate.
BETA = 0.85
INCREASE_PER_S = 0.08
ACKED_CAP = 1.5
#: The acknowledged rate at the last decrease is what the link carried when it filled: for this
#: long after it (µs) the estimate may grow back to this share of it even when less is sent
#: (a subscriber whose video was paused for bandwidth keeps an estimate that can resume it).
CAPACITY_MEMORY_US = 60_000_000
CAPACITY_SHARE = 0.95
#: The capacity at a decrease is the highest acknowledged rate over this long before it (µs).
ACKED_PEAK_US = 1_000_000
#: Additive increase near convergence: half a packet of this size per response time.
PACKET_BITS = 1200 * 8
#: §6: loss-based bounds.
LOSS_HIGH = 0.10
LOSS_LOW = 0.02
LOSS_INCREASE = 1.05
#: A decrease for loss stops at this share of the acknowledged rate (what got through).
LOSS_FLOOR_SHARE = 0.85
#: Loss is measured over at least this many packets, updates at most this often (µs).
LOSS_MIN_PACKETS = 20
LOSS_INTERVAL_US = 300_000
#: The acknowledged rate is measured over this window of arrival time (µs), of at most this many
#: packets (the oldest reported go first): a subscriber reporting one arrival time for everything
#: (or times that go back) would otherwise keep every packet it ever acknowledged. 4,096 in half a
#: second is ~8,000 packets/s, far beyond MAX_BPS.
ACKED_WINDOW_US = 500_000
ACKED_WINDOW_MAX = 4096
#: An estimate is reported once this many packets have been acknowledged.
MIN_ACKED_PACKETS = 20
#: A probe cluster counts with at least this many packets received; the estimate goes to this
#: share of what it measured; a receive rate below PROBE_LIMITED × the send rate means the link
#: limited the probe.
PROBE_MIN_PACKETS = 5
PROBE_SHARE = 0.95
PROBE_LIMITED = 0.9
#: A cluster not fully reported this long after its end is measured with what arrived (µs).
PROBE_TIMEOUT_US = 1_000_000


class Usage(Enum):
    NORMAL = "normal"
    OVERUSE = "overuse"
    UNDERUSE = "underuse"


#: The detector's usage signal (``_Trendline.usage``, ``_fastpath.Trendline.usage``) by index.
_USAGES = (Usage.NORMAL, Usage.OVERUSE, Usage.UNDERUSE)
_NORMAL, _OVERUSE, _UNDERUSE = 0, 1, 2


class PacketResult(NamedTuple):
    """One sent packet as the feedback reported it: send time and arrival time (µs, each in
    its own clock), size in bytes; ``arrival_us`` None: lost."""

    seq: int
    send_us: int
    size: int
    arrival_us: int | None


class _Probe:
    """What feedback showed of one probe cluster (packets sent in its window)."""

    __slots__ = ("start_us", "end_us", "target_bps", "sent", "sent_bytes", "first_send",
                 "last_send", "last_size", "received", "recv_bytes", "first_arrival",
                 "last_arrival", "last_recv_size")  # fmt: skip

    def __init__(self, start_us: int, target_bps: int) -> None:
        self.start_us = start_us
        self.end_us: int | None = None
        self.target_bps = target_bps
        self.sent = self.sent_bytes = self.received = self.recv_bytes = 0
        self.first_send = self.first_arrival = 1 << 62
        self.last_send = self.last_arrival = -(1 << 62)
        self.last_size = self.last_recv_size = 0

    def add(self, r: PacketResult) -> None:
        self.sent += 1
        self.sent_bytes += r.size
        self.first_send = min(self.first_send, r.send_us)
        if r.send_us >= self.last_send:
            self.last_send, self.last_size = r.send_us, r.size
        if r.arrival_us is None:
            return
        self.received += 1
        self.recv_bytes += r.size
        self.first_arrival = min(self.first_arrival, r.arrival_us)
        if r.arrival_us >= self.last_arrival:
            self.last_arrival, self.last_recv_size = r.arrival_us, r.size

    def rate(self) -> tuple[int, bool] | None:
        """min(send rate, receive rate) of the cluster (the last packet's bytes left out of
        each, as they end the span) and whether the link limited it (then the receive rate
        alone: it came in under PROBE_LIMITED x the send rate)."""
        if self.received < PROBE_MIN_PACKETS:
            return None
        send_span = self.last_send - self.first_send
        recv_span = self.last_arrival - self.first_arrival
        if send_span <= 0 or recv_span <= 0:
            return None
        send = (self.sent_bytes - self.last_size) * 8e6 / send_span
        recv = (self.recv_bytes - self.last_recv_size) * 8e6 / recv_span
        if recv < PROBE_LIMITED * send:
            return int(recv), True
        return int(min(send, recv)), False


class _Trendline:
    """The delay-based detector (§5.4, GoogCC's trendline estimator): the delay-variation trend
    (ms per ms) over the last ``TREND_WINDOW`` send groups, the overuse detector on it and its
    adaptive threshold. ``usage`` is an index into ``_USAGES``.

    The pure-Python reference of ``_fastpath.Trendline``, which ``DownlinkEstimator`` uses when
    the fast path is built (``_new_trendline``); tests/unit/media/test_fastpath_feedback.py drives
    both with the same groups and compares every double with ``==``."""

    def __init__(self) -> None:
        self.accumulated = 0.0
        self.smoothed = 0.0
        self.points: deque[tuple[float, float]] = deque(maxlen=TREND_WINDOW)
        self.first_arrival_ms: float | None = None
        self.deltas = 0
        self.trend = 0.0
        self.threshold = THRESHOLD_START
        self.usage = 0
        self.overuse_ms = 0.0
        self.overuse_count = 0
        self.prev_trend = 0.0
        self.last_threshold_ms: float | None = None

    def update(self, variation_ms: float, arrival_ms: float) -> float | None:
        if self.first_arrival_ms is None:
            self.first_arrival_ms = arrival_ms
        self.deltas += 1
        self.accumulated += variation_ms
        self.smoothed = TREND_SMOOTHING * self.smoothed + (1 - TREND_SMOOTHING) * self.accumulated
        self.points.append((arrival_ms - self.first_arrival_ms, self.smoothed))
        if len(self.points) < TREND_WINDOW:
            return None
        # least squares in one pass, x taken from the window's first point (small numbers)
        x0 = self.points[0][0]
        sx = sy = sxx = sxy = 0.0
        for x, y in self.points:
            x -= x0
            sx += x
            sy += y
            sxx += x * x
            sxy += x * y
        n = len(self.points)
        den = n * sxx - sx * sx
        return None if den == 0 else (n * sxy - sx * sy) / den

    def detect(self, groups: list[tuple[float, float, float]]) -> None:
        """Each closed send group, (variation_ms, arrival_ms, send_delta_ms), in order."""
        for variation_ms, arrival_ms, send_delta_ms in groups:
            slope = self.update(variation_ms, arrival_ms)
            if slope is None:
                continue
            trend = min(self.deltas, TREND_MAX_DELTAS) * slope * TREND_GAIN
            self.trend = trend
            if trend > self.threshold:
                self.overuse_ms += send_delta_ms if self.overuse_ms else send_delta_ms / 2
                self.overuse_count += 1
                if (
                    self.overuse_ms > OVERUSE_TIME_MS
                    and self.overuse_count > OVERUSE_COUNT
                    and trend >= self.prev_trend
                ):
                    self.overuse_ms = 0.0
                    self.overuse_count = 0
                    self.usage = _OVERUSE
            elif trend < -self.threshold:
                self.overuse_ms = 0.0
                self.overuse_count = 0
                self.usage = _UNDERUSE
            else:
                self.overuse_ms = 0.0
                self.overuse_count = 0
                self.usage = _NORMAL
            self.prev_trend = trend
            self._adapt_threshold(trend, arrival_ms)

    def _adapt_threshold(self, trend: float, now_ms: float) -> None:
        last = self.last_threshold_ms
        self.last_threshold_ms = now_ms
        if last is None:
            return
        if abs(trend) > self.threshold + THRESHOLD_MAX_JUMP:
            return  # a spike (a route change, a burst): do not let it drag the threshold
        k = THRESHOLD_K_DOWN if abs(trend) < self.threshold else THRESHOLD_K_UP
        dt = min(now_ms - last, THRESHOLD_MAX_DT_MS)
        self.threshold += k * (abs(trend) - self.threshold) * dt
        self.threshold = min(max(self.threshold, THRESHOLD_MIN), THRESHOLD_MAX)


class _Detects(Protocol):
    """``_Trendline`` or the compiled ``_fastpath.Trendline``, as the estimator uses them."""

    @property
    def trend(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def usage(self) -> int: ...
    def detect(self, groups: list[tuple[float, float, float]], /) -> None: ...


def _new_trendline(compiled: bool) -> _Detects:
    """The compiled ``_fastpath.Trendline`` with this module's constants when ``compiled`` and
    the fast path is built (``ZVONOK_PURE_PYTHON`` unset, a build that has it), else the
    reference ``_Trendline``."""
    make = getattr(native, "Trendline", None) if compiled and native is not None else None
    if make is None:
        return _Trendline()
    trendline: _Detects = make(
        window=TREND_WINDOW,
        smoothing=TREND_SMOOTHING,
        gain=TREND_GAIN,
        max_deltas=TREND_MAX_DELTAS,
        threshold=THRESHOLD_START,
        k_up=THRESHOLD_K_UP,
        k_down=THRESHOLD_K_DOWN,
        threshold_min=THRESHOLD_MIN,
        threshold_max=THRESHOLD_MAX,
        max_jump=THRESHOLD_MAX_JUMP,
        max_dt_ms=THRESHOLD_MAX_DT_MS,
        overuse_time_ms=OVERUSE_TIME_MS,
        overuse_count=OVERUSE_COUNT,
    )
    return trendline


class DownlinkEstimator:
    """GoogCC-like estimate of what a subscriber's downlink carries (bits/s).

    ``on_feedback(results, now_us)`` with every feedback's packet results (in sequence order);
    ``on_rtt(seconds)`` when an RTT is measured otherwise. Read ``estimate_bps`` (None until
    ``MIN_ACKED_PACKETS`` were acknowledged), ``loss`` (0..1, the last measured fraction),
    ``rtt`` (seconds or None), ``usage`` and ``acked_bps``. ``compiled=False``: the reference
    ``_Trendline`` even when the fast path is built (the tests compare the two).
    """

    def __init__(self, start_bps: int = START_BPS, *, compiled: bool = True) -> None:
        self.loss = 0.0
        self.rtt: float | None = None
        self.acked_bps: int | None = None
        self._delay_bps = float(start_bps)
        self._loss_bps = float(start_bps)
        self._acked_packets = 0
        self._trendline = _new_trendline(compiled)
        # the current and previous send-time groups: (first send, last send, last arrival)
        self._group: list[int] | None = None
        self._prev_group: list[int] | None = None
        self._last_update_us: int | None = None
        #: When the delay-based rate was last cut for overuse (µs, None: never).
        self.last_decrease_us: int | None = None
        self._hold = False
        self._decreased_at_bps: deque[float] = deque(maxlen=20)  # acked rates at decreases
        self._acked: deque[tuple[int, int]] = deque()  # (arrival µs, bytes) in the window
        self._acked_bytes = 0
        self._acked_newest = -(1 << 62)
        self._acked_recent: deque[tuple[int, int]] = deque()  # (feedback µs, acked bps), 1 s
        self._loss_received = self._loss_lost = 0
        self._loss_since_us: int | None = None
        self._loss_updated_us: int | None = None
        self.feedbacks = 0
        # the probe cluster being measured: send window, target, and what feedback showed of it
        self._probe: _Probe | None = None
        #: The last probe's measured rate (bits/s) and its target, None before any.
        self.probe_result: tuple[int, int] | None = None
        #: The link limited the last probe (it arrived slower than it was sent): the link is
        #: full at about ``probe_result[0]``; False: it carried all that was sent.
        self.probe_limited = False

    # -- the output -------------------------------------------------------------------------

    @property
    def usage(self) -> Usage:
        """The delay-based detector's signal (its trendline's, read, never copied)."""
        return _USAGES[self._trendline.usage]

    @property
    def threshold(self) -> float:
        return self._trendline.threshold

    @property
    def trend(self) -> float:
        return self._trendline.trend

    @property
    def estimate_bps(self) -> int | None:
        if self._acked_packets < MIN_ACKED_PACKETS:
            return None
        return int(min(self._delay_bps, self._loss_bps))

    @property
    def app_limited(self) -> bool:
        """The estimate sits at the cap the acknowledged rate puts on it: what is forwarded does
        not show what the link could carry (a probe would)."""
        acked = self.acked_bps
        return acked is not None and self._delay_bps >= 0.95 * (ACKED_CAP * acked + 10_000)

    def capacity_bps(self, now_us: int) -> int | None:
        """What the link carried when it last filled (the acknowledged rate at the last decrease
        for overuse) if that was within ``CAPACITY_MEMORY_US``, else None: a layer above it is
        known not to fit."""
        cut = self.last_decrease_us
        if cut is None or now_us - cut >= CAPACITY_MEMORY_US or not self._decreased_at_bps:
            return None
        return int(self._decreased_at_bps[-1])

    def start_probe(self, now_us: int, target_bps: int) -> None:
        """Packets sent from ``now_us`` until ``end_probe`` form a probe cluster."""
        self._probe = _Probe(now_us, target_bps)

    def end_probe(self, now_us: int) -> None:
        if self._probe is not None and self._probe.end_us is None:
            self._probe.end_us = now_us

    def on_rtt(self, seconds: float) -> None:
        self.rtt = seconds if self.rtt is None else 0.875 * self.rtt + 0.125 * seconds

    # -- the input --------------------------------------------------------------------------

    def on_feedback(self, results: list[PacketResult], now_us: int) -> None:
        """One feedback's packets (send order); updates trend, rates and loss."""
        if not results:
            return
        received = [r for r in results if r.arrival_us is not None]
        newest_send = max((r.send_us for r in received), default=None)
        self._acknowledge(received)
        groups: list[tuple[float, float, float]] = []
        for r in sorted(received, key=lambda r: r.arrival_us or 0):
            self._group_packet(r, groups)
        self.on_summary(
            len(received), len(results) - len(received), newest_send, self.acked_bps, groups,
            results, now_us,
        )  # fmt: skip

    @property
    def measuring_probe(self) -> bool:
        """A probe cluster is being measured: ``on_summary`` needs the packets."""
        return self._probe is not None

    def on_summary(
        self,
        received: int,
        lost: int,
        newest_send_us: int | None,
        acked_bps: int | None,
        groups: list[tuple[float, float, float]],
        results: list[PacketResult] | None,
        now_us: int,
    ) -> None:
        """The decisions on one feedback, given its per-packet part (``on_feedback``'s, or the
        compiled ``FeedbackCore``'s): packets received and lost, the newest send time among the
        received (the feedback delay), the acknowledged rate after them, the send groups they
        closed (``_Trendline.detect``'s, in order) and, while ``measuring_probe``, the packets."""
        self.feedbacks += 1
        feedback_delay = None if newest_send_us is None else now_us - newest_send_us
        if feedback_delay is not None and feedback_delay >= 0:
            self.on_rtt(feedback_delay / 1e6)
        self._acked_packets += received
        self.acked_bps = acked_bps
        if groups:
            self._trendline.detect(groups)
        self._update_loss(received, lost, now_us)
        if self.acked_bps is not None:
            recent = self._acked_recent
            recent.append((now_us, self.acked_bps))
            while recent[0][0] < now_us - ACKED_PEAK_US:
                recent.popleft()
        self._update_rate(now_us)
        if self._probe is not None:
            if results is None:
                raise ValueError("a probe is being measured: on_summary needs the packets")
            self._measure_probe(results, now_us)

    def _measure_probe(self, results: list[PacketResult], now_us: int) -> None:
        probe = self._probe
        assert probe is not None
        done = False
        for r in results:
            if r.send_us < probe.start_us:
                continue
            if probe.end_us is not None and r.send_us > probe.end_us:
                done = True
                continue
            probe.add(r)
        if probe.end_us is not None and now_us - probe.end_us > PROBE_TIMEOUT_US:
            done = True
        if not done:
            return
        self._probe = None
        measured = probe.rate()
        if measured is None:
            return
        rate, self.probe_limited = measured
        self.probe_result = (rate, probe.target_bps)
        if self.usage is Usage.OVERUSE:
            return  # the probe itself overloaded the link: the decrease stands
        bps = min(float(rate) * PROBE_SHARE, MAX_BPS)
        self._delay_bps = max(self._delay_bps, bps)
        self._loss_bps = max(self._loss_bps, bps)

    def _acknowledge(self, received: list[PacketResult]) -> None:
        """The acknowledged rate: bytes received within the last ACKED_WINDOW_US of arrival
        time (the window kept in arrival order of the feedback, trimmed by the newest arrival)."""
        acked = self._acked
        for r in received:
            at = r.arrival_us
            assert at is not None
            acked.append((at, r.size))
            self._acked_bytes += r.size
            if at > self._acked_newest:
                self._acked_newest = at
        newest = self._acked_newest
        while acked and acked[0][0] < newest - ACKED_WINDOW_US:
            self._acked_bytes -= acked.popleft()[1]
        while len(acked) > ACKED_WINDOW_MAX:
            self._acked_bytes -= acked.popleft()[1]
        if len(acked) >= 2:
            span = newest - min(acked[0][0], acked[-1][0])
            counted = self._acked_bytes - acked[0][1]  # the first one opens the span
            if span < ACKED_WINDOW_US // 2:  # too short to tell: as if spread over half a window
                span, counted = ACKED_WINDOW_US // 2, self._acked_bytes
            self.acked_bps = int(counted * 8 * 1_000_000 / span)

    # -- delay-based (§5) -------------------------------------------------------------------

    def _group_packet(self, r: PacketResult, closed: list[tuple[float, float, float]]) -> None:
        """Adds ``r`` to its send group; a group it closes goes to ``closed`` as
        ``_Trendline.detect`` takes it."""
        arrival = r.arrival_us
        assert arrival is not None
        group = self._group
        if group is None:
            self._group = [r.send_us, r.send_us, arrival]
            return
        if r.send_us < group[0]:
            return  # reordered from an earlier group: its group is already closed
        if r.send_us - group[0] <= BURST_US:
            group[1] = max(group[1], r.send_us)
            group[2] = max(group[2], arrival)
            return
        prev = self._prev_group
        if prev is not None:
            send_delta = (group[1] - prev[1]) / 1000.0
            arrival_delta = (group[2] - prev[2]) / 1000.0
            closed.append((arrival_delta - send_delta, group[2] / 1000.0, send_delta))
        self._prev_group = group
        self._group = [r.send_us, r.send_us, arrival]

    def _update_rate(self, now_us: int) -> None:
        last = self._last_update_us
        self._last_update_us = now_us
        dt = 0.0 if last is None else min(max(now_us - last, 0), 1_000_000) / 1e6
        acked = self.acked_bps
        rate = self._delay_bps
        if self.usage is Usage.OVERUSE:
            # at most one decrease per round trip (10-200 ms), the time it takes to show
            since = self.last_decrease_us
            wait = min(max(self.rtt or 0.1, 0.01), 0.2) * 1e6
            if since is None or now_us - since >= wait:
                self.last_decrease_us = now_us
                self._hold = True
                if acked is not None:
                    # what the link carried as it filled: the highest acknowledged rate of the
                    # last second (the current one sags once packets start to drop)
                    peak = max((bps for _, bps in self._acked_recent), default=acked)
                    self._decreased_at_bps.append(float(max(peak, acked)))
                    rate = min(rate, BETA * acked)
                else:
                    rate *= BETA
        elif self.usage is Usage.NORMAL and self._hold:
            self._hold = False  # the first normal signal after a decrease only ends the hold
        elif self.usage is Usage.NORMAL and dt > 0:
            if self._near_convergence(acked):
                response_s = (self.rtt or 0.1) + 0.1
                rate += 0.5 * PACKET_BITS * dt / response_s
            else:
                rate *= (1 + INCREASE_PER_S) ** dt
            cap = None if acked is None else ACKED_CAP * acked + 10_000
            capacity = self.capacity_bps(now_us)
            if cap is not None and capacity is not None:
                cap = max(cap, CAPACITY_SHARE * capacity)
            if cap is not None and rate > cap:
                rate = max(self._delay_bps, cap)  # no growth beyond it, no cut either
        # UNDERUSE: hold (the queues are draining)
        self._delay_bps = min(max(rate, MIN_BPS), MAX_BPS)

    def _near_convergence(self, acked: int | None) -> bool:
        """True when the acknowledged rate is within three standard deviations of the rates
        at which earlier decreases happened (the link's capacity seen before)."""
        points = self._decreased_at_bps
        if acked is None or len(points) < 2:
            return False
        mean = sum(points) / len(points)
        std = math.sqrt(sum((p - mean) ** 2 for p in points) / len(points))
        return abs(acked - mean) <= 3 * max(std, 0.05 * mean)

    # -- loss-based (§6) --------------------------------------------------------------------

    def _update_loss(self, received: int, lost: int, now_us: int) -> None:
        self._loss_received += received
        self._loss_lost += lost
        if self._loss_since_us is None:
            self._loss_since_us = now_us
        total = self._loss_received + self._loss_lost
        last = self._loss_updated_us
        if total < LOSS_MIN_PACKETS or (last is not None and now_us - last < LOSS_INTERVAL_US):
            return
        self.loss = self._loss_lost / total
        self._loss_received = self._loss_lost = 0
        self._loss_updated_us = now_us
        if self.loss > LOSS_HIGH:
            # Never below what the link is delivering (LOSS_FLOOR_SHARE x acknowledged): sending
            # 1.5 Mbit/s into a 300 kbit/s link loses ~80 %, and halving on each update drove the
            # estimate to ~40 kbit/s in 2.5 s, so the subscriber was paused (audio only, whose
            # low rate then capped the climb back) instead of moved to a layer the link carries.
            acked = self.acked_bps or 0
            floor = min(self._loss_bps, LOSS_FLOOR_SHARE * acked)
            self._loss_bps = max(self._loss_bps * (1 - 0.5 * self.loss), floor)
        elif self.loss < LOSS_LOW:
            self._loss_bps *= LOSS_INCREASE
        # never let the loss bound run far above what the delay side allows
        self._loss_bps = min(max(self._loss_bps, MIN_BPS), MAX_BPS, 2 * self._delay_bps)
