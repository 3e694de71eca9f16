"""A started ``MediaWorker`` on loopback with a fast housekeeping tick, for the tick's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from zvonok.media import worker as worker_module
from zvonok.media.worker import MediaWorker

#: The tick interval the worker runs with (seconds): 0.25 in production.
TICK = 0.02
#: A slow (nothing published) tick interval for the tick rate's tests: 1.0 in production.
IDLE_TICK = 0.08


@asynccontextmanager
async def ticking_worker(
    monkeypatch: pytest.MonkeyPatch, *, idle_tick: float = TICK
) -> AsyncIterator[MediaWorker]:
    """The worker ticks every ``TICK`` while hurried and every ``idle_tick`` otherwise (by
    default the same: the tests of what a tick does need not publish anything)."""
    monkeypatch.setattr(worker_module, "TICK_INTERVAL", TICK)
    monkeypatch.setattr(worker_module, "IDLE_TICK_INTERVAL", idle_tick)
    media = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await media.start()
    try:
        yield media
    finally:
        await media.close()
