"""A started ``MediaWorker`` on loopback with a fast housekeeping tick, for the tick's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from zvonok.media import worker as worker_module
from zvonok.media.worker import MediaWorker

#: The tick interval the worker runs with (seconds): 0.25 in production.
TICK = 0.02


@asynccontextmanager
async def ticking_worker(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MediaWorker]:
    monkeypatch.setattr(worker_module, "TICK_INTERVAL", TICK)
    media = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await media.start()
    try:
        yield media
    finally:
        await media.close()
