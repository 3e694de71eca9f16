"""A ``MediaWorker`` whose tick sleeps while it is idle: no transport and no callback that keeps
it running (a media worker process with no room wakes up for nothing), and ticks again from the
next transport or room on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from zvonok.media.transport.transport import ConnectionState
from zvonok.media.worker import MediaWorker

from .worker_fakes import TICK, ticking_worker


class Listener:
    """A session's side of a transport that nobody connects to."""

    def on_rtp(self, packet: bytes) -> None:
        pass

    def on_rtcp(self, packet: bytes) -> None:
        pass

    def on_state(self, state: ConnectionState) -> None:
        pass


@pytest.fixture
async def media(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MediaWorker]:
    async with ticking_worker(monkeypatch) as media:
        yield media


async def test_an_idle_worker_does_not_tick(media: MediaWorker) -> None:
    seen: list[float] = []
    media.add_tick(seen.append, keep_awake=False)  # a process's metrics: nothing to do idle
    assert media.idle
    await asyncio.sleep(TICK * 6)
    assert seen == [] and media.awake_ticks == 0


async def test_a_room_s_tick_wakes_it_and_its_end_lets_it_sleep(media: MediaWorker) -> None:
    seen: list[float] = []
    media.add_tick(seen.append, keep_awake=False)
    unsubscribe = media.add_tick(lambda now: None)  # a room's router keeps it running
    assert not media.idle
    await asyncio.sleep(TICK * 6)
    assert len(seen) >= 2 and media.awake_ticks == len(seen)
    unsubscribe()
    unsubscribe()  # idempotent: the count of callbacks that keep it awake stays right
    assert media.idle
    await asyncio.sleep(TICK * 3)
    count = len(seen)
    await asyncio.sleep(TICK * 6)
    assert len(seen) == count  # asleep: at most the one tick that found it idle ran meanwhile


async def test_a_transport_wakes_it_until_it_closes(media: MediaWorker) -> None:
    seen: list[float] = []
    media.add_tick(seen.append, keep_awake=False)
    transport = media.create_transport(Listener())
    assert not media.idle
    await asyncio.sleep(TICK * 6)
    assert len(seen) >= 2
    transport.close()
    assert media.idle and media.transports == {}
    await asyncio.sleep(TICK * 3)
    count = len(seen)
    await asyncio.sleep(TICK * 6)
    assert len(seen) == count
    media.create_transport(Listener())
    await asyncio.sleep(TICK * 4)
    assert len(seen) > count and media.awake_ticks >= 1
