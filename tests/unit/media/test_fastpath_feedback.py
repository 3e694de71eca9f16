"""Reading a subscriber's transport-cc feedback in C: the compiled ``FeedbackCore`` (adapter +
the estimator's per-packet steps) followed by ``DownlinkEstimator.on_summary`` with the compiled
``Trendline`` (trendline, overuse detector, adaptive threshold) is exactly the pure-Python
``FeedbackAdapter`` followed by ``DownlinkEstimator.on_feedback`` with the reference
``_Trendline`` (draft-holmer-rmcat-transport-wide-cc-extensions-01, draft-ietf-rmcat-gcc-02
§5.4; forwarding/twcc.py, forwarding/bwe.py). Random feedback sequences (reordering, loss,
duplicates, reference-time wrap, 16-bit seq wrap, unknown seqs, probes) go to both; every output
and the detector's whole state are compared after each feedback, doubles bit for bit. The
detectors are also driven directly with random groups. Malformed input raises a clear error and
leaves the core (or the detector) as it was."""

from __future__ import annotations

import copy
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zvonok.media.fastpath import native
from zvonok.media.forwarding import bwe, twcc
from zvonok.media.forwarding.bwe import (
    ACKED_WINDOW_MAX,
    ACKED_WINDOW_US,
    BURST_US,
    THRESHOLD_MAX,
    THRESHOLD_MIN,
    TREND_WINDOW,
    DownlinkEstimator,
    _new_trendline,
    _Trendline,
)
from zvonok.media.forwarding.twcc import Downlink, FeedbackAdapter
from zvonok.media.packets.rtcp import TransportFeedback
from zvonok.media.packets.rtp import build_extension_block

from .test_fastpath import wire

pytestmark = pytest.mark.skipif(native is None, reason="the compiled fast path is not built")


class History:
    """A send history as a transport's ``twcc_lookup`` answers it (seq -> (send µs, size))."""

    def __init__(self) -> None:
        self.sent: dict[int, tuple[int, int]] = {}
        self.calls = 0

    def twcc_lookup(self, seq: int) -> tuple[int, int] | None:
        self.calls += 1
        return self.sent.get(seq)


class FakeTransport(History):
    def set_twcc_receive(self, ext_id: int) -> None:
        pass

    def set_twcc_send(self, ext_id: int) -> None:
        pass


class Route:
    def __init__(self) -> None:
        self.on_transport_feedback: Callable[[TransportFeedback], None] = lambda _fb: None


def bits(value: object) -> object:
    """A float as its bits (so -0.0 != 0.0 and a NaN equals itself), tuples and lists deeply."""
    if isinstance(value, float):
        return value.hex()
    if isinstance(value, (tuple, list)):
        return tuple(bits(v) for v in value)
    return value


def detector_state(t: Any) -> object:
    """Everything a ``Trendline`` or ``_Trendline`` keeps, doubles as bits."""
    return bits((
        t.accumulated, t.smoothed, list(t.points), t.first_arrival_ms, t.deltas, t.trend,
        t.threshold, t.usage, t.overuse_ms, t.overuse_count, t.prev_trend, t.last_threshold_ms,
    ))  # fmt: skip


def observed(d: Downlink, now: int) -> tuple[Any, ...]:
    """Everything the estimator and the adapter expose (and the state they decide from)."""
    e = d.estimator
    return (
        e.estimate_bps, e.loss, e.rtt, e.usage, e.acked_bps, e.probe_result, e.probe_limited,
        e.threshold, e.trend, e.feedbacks, e.app_limited, e.capacity_bps(now),
        e.last_decrease_us, e._delay_bps, e._loss_bps, e._acked_packets, e.measuring_probe,
        list(e._acked_recent), d.adapter.feedbacks, d.adapter.unknown,
        bits((e.threshold, e.trend, e._delay_bps, e._loss_bps)), detector_state(e._trendline),
    )  # fmt: skip


def pair(transport: Any, clock: list[int]) -> tuple[Downlink, Downlink]:
    assert native is not None
    compiled = Downlink(transport, Route(), clock_us=lambda: clock[0])
    reference = Downlink(transport, Route(), clock_us=lambda: clock[0], compiled=False)
    assert compiled._core is not None and reference._core is None
    assert isinstance(compiled.estimator._trendline, native.Trendline)
    assert isinstance(reference.estimator._trendline, _Trendline)
    return compiled, reference


def run(seed: int, near_wrap: bool, ref_wrap: bool, rounds: int) -> None:
    """One random call: packets sent (bursts, gaps), feedback on them in random windows."""
    rng = random.Random(seed)
    transport = FakeTransport()
    clock = [0]
    compiled, reference = pair(transport, clock)
    seq = rng.randint(0xFF00, 0xFFFF) if near_wrap else rng.randint(0, 0xFFFF)
    ref = rng.choice([0x7FFFF0, -0x800000 + 3]) if ref_wrap else rng.randint(-0x800000, 0x7FFFFF)
    send = rng.randint(0, 1 << 40)
    cursor = seq  # the first seq not reported yet (roughly)
    fb_count = 0
    for _ in range(rounds):
        for _ in range(rng.randint(0, 30)):  # packets sent since the last feedback
            send += rng.choice([0, 0, 300, 1_000, 4_000, 5_000, 6_000, 20_000, 70_000])
            transport.sent[seq] = (send, rng.choice([80, 1_100, rng.randint(1, 1_300)]))
            if rng.random() < 0.02:  # an overwritten record: a seq 4,096 on (filter slots)
                transport.sent[(seq + 4096) & 0xFFFF] = (send, 500)
            seq = (seq + 1) & 0xFFFF
        if rng.random() < 0.05:
            transport.sent.pop(rng.choice(list(transport.sent) or [0]), None)  # forgotten
        clock[0] = send + rng.choice([-5_000, 0, 30_000, 60_000, 250_000])
        r = rng.random()
        if r < 0.08:
            at = clock[0] - rng.randint(0, 200_000)
            target = rng.randint(100_000, 5_000_000)
            compiled.estimator.start_probe(at, target)
            reference.estimator.start_probe(at, target)
        elif r < 0.16:
            compiled.estimator.end_probe(clock[0])
            reference.estimator.end_probe(clock[0])
        # the feedback: from a bit before the cursor (duplicates, late reports) to past it
        base = (cursor - rng.choice([0, 0, 0, 1, 3, 20, 4096])) & 0xFFFF
        count = rng.choice([0, 1, rng.randint(1, 40), rng.randint(1, 120)])
        deltas: list[int | None] = []
        for _ in range(count):
            x = rng.random()
            if x < 0.1:
                deltas.append(None)
            elif x < 0.15:
                deltas.append(rng.randint(-0x8000, 0x7FFF))
            else:
                deltas.append(rng.choice([0, 4, rng.randint(0, 255), rng.randint(0, 40)]))
        cursor = (cursor + rng.randint(0, count)) & 0xFFFF
        step = rng.choice([0, 1, 1, 2, 0x7FFFFF, -3, 0x400000])
        ref = ((ref + step + 0x800000) & 0xFFFFFF) - 0x800000  # the signed 24-bit field
        fb = TransportFeedback(1, 2, base, ref, fb_count, deltas)
        fb_count = (fb_count + 1) & 0xFF
        compiled.on_feedback(fb)
        reference.on_feedback(fb)
        assert observed(compiled, clock[0]) == observed(reference, clock[0])
        assert compiled.estimator.probe_result == reference.estimator.probe_result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    near_wrap=st.booleans(),
    ref_wrap=st.booleans(),
    rounds=st.integers(1, 60),
)
def test_compiled_feedback_matches_the_reference(
    seed: int, near_wrap: bool, ref_wrap: bool, rounds: int
) -> None:
    run(seed, near_wrap, ref_wrap, rounds)


def test_a_long_call_with_probes_matches_the_reference() -> None:
    for seed in range(40):
        run(seed, seed % 2 == 0, seed % 3 == 0, 400)


def test_reads_a_compiled_send_targets_ring_as_its_twcc_lookup() -> None:
    """The C reads a compiled ``SendTarget``'s history directly; the adapter asks it."""
    assert native is not None
    rng = random.Random(7)
    with wire() as w:
        target: Any = w.target()
        target.set_twcc(3)
        target.twcc_seq = 0xFFF0  # the 16-bit wrap inside the run
        block = build_extension_block([(3, b"\0\0")])
        for i in range(300):
            header = struct.pack("!BBHII", 0x90, 96, i, i * 3000, 0x1111)
            target.send(header + block + bytes(rng.randint(50, 1_200)))
        core: Any = native.FeedbackCore(BURST_US, ACKED_WINDOW_US)
        adapter = FeedbackAdapter(target.twcc_lookup)
        estimator = DownlinkEstimator()
        for k in range(30):
            base = (0xFFF0 + 10 * k - rng.randint(0, 3)) & 0xFFFF
            deltas: list[int | None] = [
                None if rng.random() < 0.1 else rng.randint(0, 60) for _ in range(12)
            ]
            fb = TransportFeedback(1, 2, base, 100 + k, k, deltas)
            summary = core.feed(base, fb.reference_time, deltas, target, True)
            results = adapter.results(fb)
            if not results:
                assert summary is None
                continue
            received, lost, newest, acked, groups, packets = summary
            assert [tuple(r) for r in results] == packets
            expected_groups: list[tuple[float, float, float]] = []
            estimator._acknowledge([r for r in results if r.arrival_us is not None])
            for r in sorted(
                (r for r in results if r.arrival_us is not None), key=lambda r: r.arrival_us or 0
            ):
                estimator._group_packet(r, expected_groups)
            assert groups == expected_groups and acked == estimator.acked_bps
            assert received + lost == len(results)
            assert newest == max((r.send_us for r in results if r.arrival_us is not None),
                                 default=None)  # fmt: skip
        assert core.feedbacks == adapter.feedbacks and core.unknown == adapter.unknown
        assert core.unknown > 0  # the run reported seqs past what was sent


def test_the_duplicate_filter_is_made_at_the_first_feedback() -> None:
    transport = FakeTransport()
    downlink = Downlink(transport, Route(), clock_us=lambda: 0)
    core: Any = downlink._core
    assert core is not None and not core.filter_allocated  # an idle session pays nothing
    downlink.on_feedback(TransportFeedback(1, 2, 0, 0, 0, [1]))
    assert core.filter_allocated and core.feedbacks == 1 and core.unknown == 1


def _fresh() -> Any:
    assert native is not None
    return native.FeedbackCore(BURST_US, ACKED_WINDOW_US)


def _history() -> History:
    h = History()
    for s in range(100):
        h.sent[s] = (1_000_000 + s * 1_000, 1_000)
    return h


def _state(core: Any) -> tuple[Any, ...]:
    return (core.feedbacks, core.unknown, core.window_len, core.acked_bps, core.filter_allocated)


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0, 0, (1, 2)), TypeError, "deltas must be a list"),
        ((0, 0, [1, "2"]), TypeError, "delta 1 is str"),
        ((0, 0, [1, 2.5]), TypeError, "delta 1 is float"),
        ((0, 0, [1, 2**70]), OverflowError, "arrival of packet 1"),
        ((0, 0, [1, 2**60]), OverflowError, "arrival of packet 1"),
        ((0, 2**60, [1]), OverflowError, "reference time"),
        ((0, 2**80, [1]), OverflowError, "int too big"),
        (("0", 0, [1]), TypeError, "integer"),
    ],
)
def test_malformed_feedback_raises_and_changes_nothing(
    args: tuple[Any, Any, Any], error: type[Exception], match: str
) -> None:
    core, history = _fresh(), _history()
    core.feed(0, 5, [4, None, 8], history, False)
    before = _state(core)
    with pytest.raises(error, match=match):
        core.feed(*args, history, False)
    assert _state(core) == before
    # nothing lost: the next feedback reads as it would have without the bad one
    other = _fresh()
    other.feed(0, 5, [4, None, 8], history, False)
    assert core.feed(1, 6, [3, 9, 2, 2], history, True) == other.feed(
        1, 6, [3, 9, 2, 2], history, True
    )
    assert _state(core) == _state(other)


class BadHistory:
    def __init__(self, answer: object) -> None:
        self.answer = answer

    def twcc_lookup(self, seq: int) -> object:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (RuntimeError("history gone"), RuntimeError, "history gone"),
        ((1, 2, 3), ValueError, r"twcc_lookup\(7\) must return None or \(send_us, size\)"),
        ((1, -1), ValueError, "0 <= size"),
        ((1, 2**32), ValueError, "0 <= size"),
        ((2**62, 5), ValueError, "send_us"),
        (("1", 5), ValueError, "send_us"),
        ([1, 5], ValueError, "send_us"),
    ],
)
def test_a_bad_history_raises_and_changes_nothing(
    answer: object, error: type[Exception], match: str
) -> None:
    core = _fresh()
    core.feed(0, 5, [4, None, 8], _history(), False)
    before = _state(core)
    with pytest.raises(error, match=match):
        core.feed(7, 6, [1, 2], BadHistory(answer), False)
    assert _state(core) == before


def test_feed_checks_its_arguments() -> None:
    assert native is not None
    core = _fresh()
    with pytest.raises(TypeError, match="takes 5 arguments"):
        core.feed(0, 0, [1], _history())
    with pytest.raises(ValueError, match="burst_us"):
        native.FeedbackCore(-1, ACKED_WINDOW_US)
    with pytest.raises(ValueError, match="window_us"):
        native.FeedbackCore(BURST_US, 0)
    assert native.FEEDBACK_SEEN == twcc._SEEN


def test_on_summary_needs_the_packets_while_a_probe_is_measured() -> None:
    estimator = DownlinkEstimator()
    estimator.start_probe(0, 1_000_000)
    with pytest.raises(ValueError, match="needs the packets"):
        estimator.on_summary(1, 0, 0, None, [], None, 1_000)


def test_an_empty_or_all_known_feedback_counts_as_the_reference_does() -> None:
    transport = FakeTransport()
    clock = [0]
    compiled, reference = pair(transport, clock)
    for fb in (
        TransportFeedback(1, 2, 0, 0, 0, []),
        TransportFeedback(1, 2, 5, 0, 1, [None, 3]),  # unknown seqs only
    ):
        compiled.on_feedback(fb)
        reference.on_feedback(fb)
        assert observed(compiled, 0) == observed(reference, 0)


def test_the_acknowledged_window_is_bounded_whatever_the_arrival_times() -> None:
    """A subscriber that reports one arrival time for everything (or times that go back) keeps
    no more than ACKED_WINDOW_MAX packets in the window, compiled and reference alike; before
    the bound, every packet it ever acknowledged stayed."""
    transport = FakeTransport()
    clock = [0]
    compiled, reference = pair(transport, clock)
    seq = 0
    for n in range(250):  # 10,000 packets, 40 a feedback, every arrival at the same time
        for i in range(40):
            transport.sent[(seq + i) & 0xFFFF] = (n * 20_000 + i * 500, 1_000)
        clock[0] = n * 20_000 + 30_000
        feedback = TransportFeedback(1, 2, seq & 0xFFFF, 0, n & 0xFF, [0] * 40)
        compiled.on_feedback(feedback)
        reference.on_feedback(feedback)
        seq += 40
        assert observed(compiled, clock[0]) == observed(reference, clock[0])
    core = compiled._core
    assert core is not None and core.window_len == ACKED_WINDOW_MAX
    assert len(reference.estimator._acked) == ACKED_WINDOW_MAX
    assert reference.estimator._acked_bytes == ACKED_WINDOW_MAX * 1_000
    assert compiled.estimator.acked_bps == reference.estimator.acked_bps


# -- the delay-based detector alone: compiled Trendline against the reference _Trendline -------


def detectors() -> tuple[Any, _Trendline]:
    compiled, reference = _new_trendline(True), _new_trendline(False)
    assert native is not None and isinstance(compiled, native.Trendline)
    assert isinstance(reference, _Trendline)
    return compiled, reference


#: A send group's numbers as a subscriber's feedback makes them (ms): delay variation mostly
#: small with jumps, arrivals moving on by 0-120 ms (sometimes back), send deltas 0-70 ms; and
#: now and then anything at all (huge, tiny, negative zero, infinities, NaN).
_odd = st.floats(allow_nan=True, allow_infinity=True)
_group = st.tuples(
    st.one_of(st.floats(-40, 40), st.sampled_from([0.0, -0.0, 0.25, -0.25]), _odd),
    st.one_of(st.floats(-5, 120), st.floats(-1e6, 1e6), _odd),
    st.one_of(st.floats(0, 70), st.sampled_from([0.0, 5.001, 33.0]), _odd),
)


@settings(max_examples=400, deadline=None)
@given(
    start=st.floats(-1e7, 1e12),
    steps=st.lists(st.lists(_group, max_size=12), max_size=40),
    ramp=st.floats(-3, 3),
)
def test_the_compiled_detector_is_the_reference_bit_for_bit(
    start: float, steps: list[list[tuple[float, float, float]]], ramp: float
) -> None:
    """Feedback after feedback of random groups: the same doubles, the same state, always. The
    arrivals accumulate (``start`` + the steps) and ``ramp`` adds a steady queue build-up (or
    drain) so the trend crosses the threshold both ways."""
    compiled, reference = detectors()
    at = start
    for groups in steps:
        batch = []
        for variation, step, send_delta in groups:
            at += step
            batch.append((variation + ramp, at, send_delta))
        compiled.detect(batch)
        reference.detect(batch)
        assert detector_state(compiled) == detector_state(reference)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.floats(-40, 40), _odd), st.one_of(st.floats(0, 1e4), _odd))))
def test_update_returns_the_reference_slope(points: list[tuple[float, float]]) -> None:
    compiled, reference = detectors()
    for variation, arrival in points:
        slope = compiled.update(variation, arrival)
        assert bits(slope) == bits(reference.update(variation, arrival))
        assert detector_state(compiled) == detector_state(reference)


def test_a_queue_that_builds_and_drains_gives_every_signal_alike() -> None:
    """A link whose queue fills (delay growing 1-6 ms a group), holds, then drains, in 100 ms
    feedbacks of 3 groups, and spikes: both detectors signal overuse, underuse and normal at the
    same groups, the threshold reaching both of its bounds."""
    compiled, reference = detectors()
    rng = random.Random(3)
    at = 1_000.0
    usages: set[int] = set()
    thresholds: set[float] = set()
    for n in range(3_000):
        phase = (n // 150) % 4
        slope = (2.5, 0.0, -2.5, 0.0)[phase] * rng.uniform(0.4, 2.4)
        if rng.random() < 0.01:
            slope = rng.choice([-900.0, 900.0])  # a spike the threshold ignores
        batch = []
        for _ in range(3):
            at += rng.uniform(20, 45)
            batch.append((slope + rng.gauss(0, 0.5), at, rng.uniform(20, 45)))
        compiled.detect(batch)
        reference.detect(batch)
        assert detector_state(compiled) == detector_state(reference)
        usages.add(reference.usage)
        thresholds.add(reference.threshold)
    assert usages == {0, 1, 2} and THRESHOLD_MIN in thresholds
    # then a delay that grows just fast enough for the trend to stay 10 ms above the threshold
    # (within its jump): the threshold climbs to its top
    for _ in range(100):
        at += 100.0
        low, high = -1e4, 1e4  # the variation that puts the trend there, bisected
        for _ in range(60):
            mid = (low + high) / 2
            trial = copy.deepcopy(reference)
            trial.detect([(mid, at, 30.0)])
            if trial.trend > reference.threshold + 10:
                high = mid
            else:
                low = mid
        batch = [(low, at, 30.0)]
        compiled.detect(batch)
        reference.detect(batch)
        assert detector_state(compiled) == detector_state(reference)
    assert reference.threshold == THRESHOLD_MAX and reference.usage == 1


def test_the_window_is_a_fixed_ring() -> None:
    compiled, reference = detectors()
    assert native is not None
    assert compiled.window == TREND_WINDOW <= native.TRENDLINE_WINDOW_MAX
    for k in range(3 * TREND_WINDOW):
        compiled.update(0.5 * k, 10.0 * k)
        reference.update(0.5 * k, 10.0 * k)
        assert len(compiled.points) == min(k + 1, TREND_WINDOW)
        assert detector_state(compiled) == detector_state(reference)
    with pytest.raises(ValueError, match="window"):
        native.Trendline(**dict(TRENDLINE_ARGS, window=native.TRENDLINE_WINDOW_MAX + 1))
    with pytest.raises(ValueError, match="window"):
        native.Trendline(**dict(TRENDLINE_ARGS, window=1))


#: ``_new_trendline``'s arguments (bwe.py's constants), for making one here.
TRENDLINE_ARGS: dict[str, Any] = {
    "window": TREND_WINDOW, "smoothing": bwe.TREND_SMOOTHING, "gain": bwe.TREND_GAIN,
    "max_deltas": bwe.TREND_MAX_DELTAS, "threshold": bwe.THRESHOLD_START,
    "k_up": bwe.THRESHOLD_K_UP, "k_down": bwe.THRESHOLD_K_DOWN, "threshold_min": THRESHOLD_MIN,
    "threshold_max": THRESHOLD_MAX, "max_jump": bwe.THRESHOLD_MAX_JUMP,
    "max_dt_ms": bwe.THRESHOLD_MAX_DT_MS, "overuse_time_ms": bwe.OVERUSE_TIME_MS,
    "overuse_count": bwe.OVERUSE_COUNT,
}  # fmt: skip


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ((1.0, 2.0, 3.0), "groups must be a list"),
        ([(1.0, 2.0, 3.0), (1.0, 2.0)], "group 1 is not"),
        ([(1.0, 2.0, 3.0), [1.0, 2.0, 3.0]], "group 1 is not"),
        ([(1.0, 2.0, 3.0), (1.0, 2, 3.0)], "group 1 is not"),  # an int: the reference's
        ([(1.0, 2.0, 3.0), None], "group 1 is not"),  # arithmetic would differ
    ],
)
def test_malformed_groups_raise_and_change_nothing(groups: Any, match: str) -> None:
    compiled, _ = detectors()
    compiled.detect([(0.5 * k, 10.0 * k, 5.0) for k in range(TREND_WINDOW + 3)])
    before = detector_state(compiled)
    with pytest.raises(TypeError, match=match):
        compiled.detect(groups)
    assert detector_state(compiled) == before
    with pytest.raises(TypeError, match="takes floats"):
        compiled.update(1, 2.0)
    with pytest.raises(TypeError, match="takes 2 arguments"):
        compiled.update(1.0)
    assert detector_state(compiled) == before


def test_without_the_compiled_detector_the_reference_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(DownlinkEstimator(compiled=False)._trendline, _Trendline)
    monkeypatch.setattr(bwe, "native", None)  # ZVONOK_PURE_PYTHON=1, or no build
    assert isinstance(DownlinkEstimator()._trendline, _Trendline)
