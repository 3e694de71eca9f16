"""Fixtures shared by unit tests: a real MediaWorker on 127.0.0.1 (no client connects to it)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from zvonok.media.worker import MediaWorker


@pytest.fixture
async def worker() -> AsyncIterator[MediaWorker]:
    w = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await w.start()
    yield w
    await w.close()
