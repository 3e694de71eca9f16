"""The quality monitor's schedule: each session measured on a phase of its own.

Real sessions (a real ``RoomService`` and ``MediaWorker`` on 127.0.0.1 port 0 that no client
reaches, as in test_operations.py) and a fake clock driving ``QualityMonitor.tick``. The
transports' SRTCP byte counter is advanced by hand between ticks (what a client's reports would
add), so each ``bitrateIn`` is known. Before the schedule every session was measured on the same
tick, 40 of them at once here, which the first test refuses.
"""

from __future__ import annotations

import json
import math
import random
from typing import Any

from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.participant import Participant
from zvonok.rooms.quality import SLOTS, QualityMonitor
from zvonok.rooms.service import RoomService
from zvonok.signaling.messages import Stats, StatsFrame

from ..fakes import RecordingSink

INTERVAL = 5.0
TICK = INTERVAL / SLOTS  # the worker's 0.25 s


class Call:
    """Sessions two to a 1:1 room, each with its sink and the byte rate its transport gets."""

    def __init__(self, worker: MediaWorker) -> None:
        self.rooms = RoomService(
            worker=worker,
            sessions=LocalSessionDirectory(),
            rooms=LocalRoomDirectory(),
            ice_servers=[],
        )
        self.sinks: dict[str, RecordingSink] = {}
        self.rates: dict[str, int] = {}  # session -> bytes per tick
        self.rx_at: dict[str, int] = {}  # session -> its bytes in when it was last measured
        self.joined = 0

    async def join(self, count: int) -> list[Participant]:
        added = []
        for _ in range(count):
            n = self.joined
            self.joined += 1
            sid, sink = f"s-{n}", RecordingSink()
            key = RoomKey(RoomKind.CHAT, str(n // 2))
            participant, _ = await self.rooms.join(
                key, UserId(f"u{n}"), SessionId(sid), n // 2, sink
            )
            self.sinks[sid], self.rates[sid] = sink, 100 * (n + 1)
            added.append(participant)
        return added

    def feed(self) -> None:
        """One tick's bytes in on every live session's transport."""
        for sid, participant in self.rooms.sessions.items():
            participant.transport._rx_bytes += self.rates[sid]

    def stats(self, sid: str) -> list[dict[str, Any]]:
        return [p for t, p in self.sinks[sid].sent if t == "stats" and p is not None]


def tick(monitor: QualityMonitor, call: Call, now: float, log: dict[str, list[float]]) -> int:
    """Feed, tick at ``now``; note who got ``stats`` and return how many did."""
    before = {sid: len(call.stats(sid)) for sid in call.sinks}
    monitor.tick(now)
    measured = [sid for sid in call.sinks if len(call.stats(sid)) > before[sid]]
    for sid in measured:
        assert len(call.stats(sid)) == before[sid] + 1  # never twice on one tick
        log.setdefault(sid, []).append(now)
        call.rx_at[sid] = call.rooms.sessions[SessionId(sid)].transport.rx_bytes
    return len(measured)


async def test_a_tick_measures_a_share_and_each_session_gets_stats_every_interval(
    worker: MediaWorker,
) -> None:
    call = Call(worker)
    await call.join(40)
    monitor = QualityMonitor(call.rooms, interval=INTERVAL)
    log: dict[str, list[float]] = {}
    per_tick = []
    for n in range(4 * SLOTS):  # four intervals of ticks
        call.feed()
        per_tick.append(tick(monitor, call, 1000.0 + n * TICK, log))
    assert max(per_tick) <= math.ceil(40 / SLOTS) + 1, per_tick
    assert sum(per_tick) == 4 * 40
    for sid, times in log.items():
        assert len(times) == 4
        assert 1000.0 <= times[0] < 1000.0 + INTERVAL  # the first within one interval
        assert [b - a for a, b in zip(times, times[1:], strict=False)] == [INTERVAL] * 3
        first, *rest = call.stats(sid)
        assert first["bitrateIn"] is None and first["intervalMs"] == 5000
        # 20 ticks' bytes over 5 s, per session its own rate
        assert [s["bitrateIn"] for s in rest] == [call.rates[sid] * SLOTS * 8 // 5] * 3
        assert monitor.latest[sid] == rest[-1]


async def test_joins_take_the_emptiest_slots_and_leaves_free_theirs(worker: MediaWorker) -> None:
    call = Call(worker)
    first = await call.join(30)
    monitor = QualityMonitor(call.rooms, interval=INTERVAL)
    log: dict[str, list[float]] = {}
    now = 1000.0
    for _ in range(SLOTS + 3):
        call.feed()
        tick(monitor, call, now, log)
        now += TICK
    for participant in first[:10]:
        await call.rooms.leave(participant, "leave")
    joined_at = now
    late = await call.join(20)
    per_tick = []
    for _ in range(3 * SLOTS):
        call.feed()
        per_tick.append(tick(monitor, call, now, log))
        now += TICK
    # 40 live sessions: the newcomers filled the slots the leavers freed and the empty ones
    assert max(per_tick) <= math.ceil(40 / SLOTS), per_tick
    assert set(monitor.latest) == {p.session_id for p in first[10:] + late}
    for participant in first[:10]:
        assert max(log[participant.session_id]) < joined_at  # nothing after leaving
    for participant in late:
        times = log[participant.session_id]
        assert joined_at <= times[0] < joined_at + INTERVAL
        assert [b - a for a, b in zip(times, times[1:], strict=False)] == [INTERVAL] * 2


async def test_late_ticks_keep_the_interval_and_a_stall_measures_each_once(
    worker: MediaWorker,
) -> None:
    """Ticks that come late (0.25-0.28 s apart, as the worker's sleep-then-tick loop drifts)
    measure at most two slots, each session once per interval (give or take a tick); after a
    12 s stall one tick measures each session once, with rates over the 12 s."""
    call = Call(worker)
    await call.join(40)
    monitor = QualityMonitor(call.rooms, interval=INTERVAL)
    jitter = random.Random(17)
    log: dict[str, list[float]] = {}
    per_tick = []
    now = 1000.0
    while now < 1030.0:
        call.feed()
        per_tick.append(tick(monitor, call, now, log))
        now += TICK + jitter.uniform(0.0, 0.03)
    assert max(per_tick) <= 2 * math.ceil(40 / SLOTS), per_tick
    assert sum(1 for n in per_tick if n > math.ceil(40 / SLOTS)) <= len(per_tick) // 8
    for times in log.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        # a turn is taken by the first tick from half a slot before its time
        assert all(abs(gap - INTERVAL) < TICK + 0.03 for gap in gaps), gaps
    before = {sid: len(call.stats(sid)) for sid in call.sinks}
    rx_before = dict(call.rx_at)
    for participant in call.rooms.sessions.values():
        participant.transport._rx_bytes += 12_000
    stalled = now + 12.0
    assert tick(monitor, call, stalled, log) == 40
    for sid in call.sinks:
        assert len(call.stats(sid)) == before[sid] + 1
        elapsed = stalled - log[sid][-2]
        assert elapsed > 12.0
        expected = int((call.rx_at[sid] - rx_before[sid]) * 8 / elapsed)
        assert call.stats(sid)[-1]["bitrateIn"] == expected


async def test_stats_frame_is_the_wire_form_of_stats(worker: MediaWorker) -> None:
    """What the monitor sends encodes byte for byte as the parsed ``Stats`` did."""
    call = Call(worker)
    await call.join(2)
    monitor = QualityMonitor(call.rooms, interval=INTERVAL)
    monitor.run(INTERVAL)
    call.feed()
    monitor.run(INTERVAL)
    for sid in call.sinks:
        payload = monitor.latest[sid]
        frame = StatsFrame(payload)
        assert frame.type == Stats.type
        assert json.dumps(frame.to_json()) == json.dumps(Stats.parse(payload).to_json())
        assert call.stats(sid)[-1] == payload


async def test_a_session_id_joined_again_starts_over(worker: MediaWorker) -> None:
    """A new session under the id of one that left between two turns is not measured against the
    old one's counters: its first ``stats`` has no bitrates."""
    call = Call(worker)
    [old] = await call.join(1)
    monitor = QualityMonitor(call.rooms, interval=INTERVAL)
    old.transport._rx_bytes += 1_000
    monitor.tick(1000.0)
    await call.rooms.leave(old, "leave")
    sink = RecordingSink()
    key = RoomKey(RoomKind.CHAT, "0")
    new, _ = await call.rooms.join(key, UserId("u0"), old.session_id, 0, sink)
    assert new is not old
    new.transport._rx_bytes += 50_000  # more than the old one had: a rate could be made up
    monitor.tick(1000.0 + INTERVAL)
    [stats] = [p for t, p in sink.sent if t == "stats" and p is not None]
    assert stats["bitrateIn"] is None


async def test_at_the_idle_tick_each_session_still_gets_stats_every_interval(
    worker: MediaWorker,
) -> None:
    """With nothing published the worker ticks once per ``idle_period`` (a fifth of the
    interval: 1 s at 5 s), drifting as its sleep-then-tick loop does: each tick measures the
    slots whose turn came meanwhile, each session still gets one ``stats`` per interval (give or
    take a tick when the drift crosses its slot's time), the first within an interval and a tick
    of the start, and the rates are over each session's own elapsed time."""
    call = Call(worker)
    await call.join(40)
    monitor = QualityMonitor(call.rooms, interval=INTERVAL)
    assert monitor.idle_period == INTERVAL / 5
    assert QualityMonitor(call.rooms, interval=0).idle_period is None
    period = INTERVAL / 5
    jitter = random.Random(23)
    log: dict[str, list[float]] = {}
    per_tick = []
    now = 1000.0
    while now < 1040.0:
        call.feed()
        per_tick.append(tick(monitor, call, now, log))
        now += period + jitter.uniform(0.0, 0.005)
    assert max(per_tick) <= 40 // 5 + 2, per_tick  # about a fifth of them a tick
    for sid, times in log.items():
        assert times[0] < 1000.0 + INTERVAL + period
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert len(gaps) >= 6
        assert all(abs(gap - INTERVAL) < period + 0.01 for gap in gaps), gaps
        assert sum(abs(gap - INTERVAL) < 0.05 for gap in gaps) >= len(gaps) - 1, gaps
        for stats, gap in zip(call.stats(sid)[1:], gaps, strict=False):
            ticks = round(gap / period)
            assert stats["bitrateIn"] == int(call.rates[sid] * ticks * 8 / gap)
