"""The worker's housekeeping tick runs in slices of ``TICK_SLICE``: between two rooms' work the
event loop has its turn (packets that arrive meanwhile are forwarded, not held behind the whole
pass), and a callback unsubscribed or a transport closed during such a turn is skipped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from zvonok.media import worker as worker_module
from zvonok.media.worker import MediaWorker

from .worker_fakes import TICK, ticking_worker

ROOMS = 40
WORK = 0.0002  # one room's callback: 0.2 ms of CPU, 8 ms for all of them


@pytest.fixture
async def media(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MediaWorker]:
    async with ticking_worker(monkeypatch) as media:
        yield media


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Probe:
    """A task that counts its turns on the loop, like a socket read would get them."""

    def __init__(self) -> None:
        self.turns = 0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        for _ in range(1_000_000):
            self.turns += 1
            await asyncio.sleep(0)

    def stop(self) -> None:
        self._task.cancel()


async def test_the_loop_has_turns_while_a_long_tick_runs(media: MediaWorker) -> None:
    turns_seen: list[int] = []
    probe = Probe()

    def room(now: float) -> None:
        turns_seen.append(probe.turns)
        busy(WORK)

    unsubscribes = [media.add_tick(room) for _ in range(ROOMS)]
    try:
        for _ in range(200):
            await asyncio.sleep(TICK / 2)
            if len(turns_seen) >= ROOMS:
                break
    finally:
        for unsubscribe in unsubscribes:
            unsubscribe()
        probe.stop()
    one_tick = turns_seen[:ROOMS]
    assert len(one_tick) == ROOMS
    # In one go (before slicing) the probe's count stays the same through the whole pass; in
    # slices of 0.5 ms it moves every two or three rooms.
    moves = sum(1 for a, b in zip(one_tick, one_tick[1:], strict=False) if b > a)
    assert moves >= (ROOMS * WORK / worker_module.TICK_SLICE) // 2, one_tick


async def test_a_callback_unsubscribed_during_a_pause_is_skipped(media: MediaWorker) -> None:
    calls: list[str] = []
    unsubscribes: dict[str, Callable[[], None]] = {}

    def first(now: float) -> None:
        calls.append("first")
        busy(2 * worker_module.TICK_SLICE)  # the tick pauses after this one
        asyncio.get_running_loop().call_soon(unsubscribes["second"])

    def second(now: float) -> None:
        calls.append("second")

    unsubscribes["first"] = media.add_tick(first)
    unsubscribes["second"] = media.add_tick(second)
    await media.tick_sliced(0.0)
    unsubscribes["first"]()
    assert calls == ["first"]
    assert media.idle  # the unsubscribed room no longer keeps the tick awake


async def test_the_whole_pass_runs_in_order_with_the_same_now(media: MediaWorker) -> None:
    calls: list[tuple[int, float]] = []

    def make(index: int) -> Callable[[float], None]:
        def room(now: float) -> None:
            calls.append((index, now))
            busy(WORK * 3)

        return room

    unsubscribes = [media.add_tick(make(i)) for i in range(10)]
    await media.tick_sliced(12.5)
    for unsubscribe in unsubscribes:
        unsubscribe()
    assert calls == [(i, 12.5) for i in range(10)]
