"""The worker's tick rate: ``TICK_INTERVAL`` while something holds ``hurry`` (a room with a
published track), ``IDLE_TICK_INTERVAL`` otherwise; the first hold brings the next tick to one
``TICK_INTERVAL`` after the last (not after the slow sleep), its release lets it slow down again;
``add_tick(idle_period=...)`` caps the slow interval; a router holds ``hurry`` while it has a
producer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from zvonok.media.forwarding.router import Router
from zvonok.media.forwarding.types import CodecInfo, ProducerParams
from zvonok.media.worker import MediaWorker

from .worker_fakes import IDLE_TICK, TICK, ticking_worker


@pytest.fixture
async def media(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MediaWorker]:
    async with ticking_worker(monkeypatch, idle_tick=IDLE_TICK) as media:
        yield media


def _now() -> float:
    return asyncio.get_running_loop().time()


class Ticks:
    """A room's callback that notes the loop time of each tick it gets."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def __call__(self, now: float) -> None:
        self.times.append(_now())
        for count, waiter in self._waiters:
            if len(self.times) >= count and not waiter.done():
                waiter.set_result(None)

    async def until(self, count: int) -> None:
        """Wait until ``count`` ticks have been seen."""
        if len(self.times) >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        await asyncio.wait_for(waiter, timeout=count * IDLE_TICK * 4 + 1)

    def gaps(self, start: int = 0) -> list[float]:
        times = self.times[start:]
        return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


async def test_with_nothing_published_it_ticks_at_the_slow_rate(media: MediaWorker) -> None:
    assert media.tick_interval == IDLE_TICK
    ticks = Ticks()
    unsubscribe = media.add_tick(ticks)
    await ticks.until(5)
    unsubscribe()
    assert min(ticks.gaps()) >= IDLE_TICK * 0.95, ticks.gaps()


async def test_a_hold_brings_the_next_tick_within_one_fast_interval(media: MediaWorker) -> None:
    ticks = Ticks()
    unsubscribe = media.add_tick(ticks)
    try:
        await ticks.until(2)
        await asyncio.sleep(TICK * 1.5)  # well into the slow sleep (IDLE_TICK = 4 x TICK)
        count = len(ticks.times)
        held_at = _now()
        release = media.hurry()
        assert media.tick_interval == TICK
        await ticks.until(count + 1)
        # the sleep began at the last tick's end: one TICK after it is already past, so at once
        assert ticks.times[count] - held_at < TICK * 0.75, ticks.times[count] - held_at
        await ticks.until(count + 6)
        assert max(ticks.gaps(count)) < IDLE_TICK * 0.75, ticks.gaps(count)
        release()
        release()  # once only: a second call does not let another holder's hold go
        assert media.tick_interval == IDLE_TICK
        await asyncio.sleep(IDLE_TICK * 1.5)
        count = len(ticks.times)
        await ticks.until(count + 3)
        assert min(ticks.gaps(count)) >= IDLE_TICK * 0.95, ticks.gaps(count)
    finally:
        unsubscribe()


async def test_a_hold_soon_after_a_tick_waits_for_one_fast_interval(media: MediaWorker) -> None:
    ticks = Ticks()
    unsubscribe = media.add_tick(ticks)
    try:
        await ticks.until(2)
        count = len(ticks.times)
        release = media.hurry()
        await ticks.until(count + 1)
        release()
        gap = ticks.times[count] - ticks.times[count - 1]
        assert TICK * 0.9 <= gap < IDLE_TICK * 0.75, gap
    finally:
        unsubscribe()


async def test_every_holder_must_let_go(media: MediaWorker) -> None:
    first, second = media.hurry(), media.hurry()
    first()
    first()
    assert media.tick_interval == TICK
    second()
    assert media.tick_interval == IDLE_TICK


async def test_a_callback_s_idle_period_caps_the_slow_interval(media: MediaWorker) -> None:
    unsubscribe = media.add_tick(lambda now: None, keep_awake=False, idle_period=IDLE_TICK / 2)
    assert media.tick_interval == IDLE_TICK / 2
    below = media.add_tick(lambda now: None, keep_awake=False, idle_period=TICK / 10)
    assert media.tick_interval == TICK  # never faster than the fast rate
    below()
    unsubscribe()
    assert media.tick_interval == IDLE_TICK


class _Sink:
    def send_rtp(self, packet: bytes | bytearray) -> None:
        pass

    def send_rtcp(self, packet: bytes | bytearray) -> None:
        pass


def _params(producer_id: str, ssrc: int) -> ProducerParams:
    return ProducerParams(
        producer_id=producer_id,
        kind="audio",
        codecs={111: CodecInfo("opus", 48000)},
        ssrc=ssrc,
        rtx_ssrc=None,
        rtx_payload_types={},
    )


async def test_a_router_hurries_the_tick_while_it_has_a_producer(media: MediaWorker) -> None:
    router, other = Router(hurry=media.hurry), Router(hurry=media.hurry)
    first = router.produce(_params("a", 1), sink=_Sink())
    second = router.produce(_params("b", 2), sink=_Sink())
    assert media.tick_interval == TICK
    kept = other.produce(_params("c", 3), sink=_Sink())
    first.close()
    second.close()
    assert media.tick_interval == TICK  # the other room still has one
    kept.close()
    assert media.tick_interval == IDLE_TICK
    router.produce(_params("d", 4), sink=_Sink())
    assert media.tick_interval == TICK
    router.close()
    other.close()
    assert media.tick_interval == IDLE_TICK
