"""Fixtures shared by unit tests: a real MediaWorker on 127.0.0.1 (no client connects to it), and
a RoomService on it with in-process directories."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.media.worker import MediaWorker
from zvonok.rooms.service import RoomService


@pytest.fixture
async def worker() -> AsyncIterator[MediaWorker]:
    w = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await w.start()
    yield w
    await w.close()


@pytest.fixture
async def rooms(worker: MediaWorker) -> AsyncIterator[RoomService]:
    service = RoomService(
        worker=worker,
        sessions=LocalSessionDirectory(),
        rooms=LocalRoomDirectory(),
        ice_servers=[],
    )
    yield service
    await service.close()
