"""The node's graceful drain (``zvonok.drain``) over a real room service, and its admin API.

A real ``RoomService`` on a ``MediaWorker`` bound to 127.0.0.1 port 0 (no client connects) with
recording sinks; the drain's wait polls every few milliseconds, so each test takes well under a
second of wall-clock time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from zvonok.admin.api import create_admin_app
from zvonok.cluster.base import DRAINING, SERVING
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.cluster.local_nodes import LocalNodeRegistry
from zvonok.drain import NodeDrain
from zvonok.errors import SignalError
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.port import LocalRooms
from zvonok.rooms.quality import QualityMonitor
from zvonok.rooms.service import RoomService

from .fakes import RecordingSink

TOKEN = "operator-token"
ROOM = RoomKey(RoomKind.GROUP, "7")
OTHER = RoomKey(RoomKind.GROUP, "8")


@pytest.fixture
async def calls(worker: MediaWorker) -> AsyncIterator[LocalRooms]:
    service = RoomService(
        worker=worker, sessions=LocalSessionDirectory(), rooms=LocalRoomDirectory(), ice_servers=[]
    )
    yield LocalRooms(service)
    await service.close()


async def enter(calls: LocalRooms, key: RoomKey, user: str, session: str) -> RecordingSink:
    sink = RecordingSink()
    await calls.join(key, UserId(user), SessionId(session), key.id, sink)
    return sink


def draining(calls: LocalRooms, timeout: float) -> tuple[NodeDrain, list[str]]:
    drain = NodeDrain(calls, timeout, poll=0.01)
    done: list[str] = []
    drain.on_done = done.append
    return drain, done


async def test_existing_rooms_take_joins_new_rooms_are_refused(calls: LocalRooms) -> None:
    await enter(calls, ROOM, "alice", "a")
    drain, done = draining(calls, 60)
    registry = LocalNodeRegistry()
    drain.listeners.append(registry.set_state)
    assert drain.start() and not drain.start()
    assert registry.draining and calls.service.draining
    assert 59 < (drain.seconds_left() or 0) <= 60
    await enter(calls, ROOM, "bob", "b")  # a third party joins the live call
    with pytest.raises(SignalError) as refused:
        await enter(calls, OTHER, "carol", "c")
    assert refused.value.code == "node-draining" and refused.value.close_code == 1012
    assert refused.value.fatal
    # the refused session id is not left bound to carol's failed attempt
    assert SessionId("c") not in calls.service.sessions
    await asyncio.sleep(0.05)
    assert done == [] and drain.state == DRAINING
    for participant in list(calls.service.sessions.values()):
        await calls.service.leave(participant, "leave")
    await asyncio.sleep(0.05)
    assert done == ["empty"] and drain.state == "stopping"


async def test_the_timeout_ends_the_drain_and_cancel_serves_again(calls: LocalRooms) -> None:
    sink = await enter(calls, ROOM, "alice", "a")
    drain, done = draining(calls, 0.05)
    drain.start(by_signal=True)
    assert drain.by_signal
    await asyncio.sleep(0.2)
    assert done == ["timeout"] and drain.state == "stopping"
    assert not drain.cancel()  # too late
    calls.begin_shutdown("node-draining")  # what the server does next
    assert (sink.sent[-1][1] or {})["code"] == "node-draining"
    assert (sink.sent[-1][1] or {})["retryAfterMs"] == 1000
    assert sink.closed == (1012, "node-draining")


async def test_cancel_takes_new_rooms_again(calls: LocalRooms) -> None:
    await enter(calls, ROOM, "alice", "a")
    drain, done = draining(calls, 60)
    registry = LocalNodeRegistry()
    drain.listeners.append(registry.set_state)
    drain.start(by_signal=True)
    assert drain.cancel() and not drain.cancel()
    assert drain.state == SERVING and not drain.by_signal and drain.seconds_left() is None
    assert registry.state == SERVING and not calls.service.draining
    await enter(calls, OTHER, "carol", "c")
    await asyncio.sleep(0.05)
    assert done == []


async def test_an_empty_node_is_done_at_once(calls: LocalRooms) -> None:
    drain, done = draining(calls, 60)
    drain.start()
    await asyncio.sleep(0.02)
    assert done == ["empty"]


async def test_admin_drain_endpoints(calls: LocalRooms) -> None:
    await enter(calls, ROOM, "alice", "a")
    drain, _ = draining(calls, 60)
    app = create_admin_app(calls.service, QualityMonitor(calls.service), TOKEN, drain=drain)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        assert (await c.post("/admin/drain", headers={"Authorization": ""})).status_code == 401
        status = (await c.get("/admin/drain")).json()
        assert status["state"] == "serving" and status["secondsLeft"] is None
        started = (await c.post("/admin/drain")).json()
        assert started["state"] == "draining" and started["changed"] is True
        assert 0 < started["secondsLeft"] <= 60 and started["empty"] is False
        assert (await c.post("/admin/drain")).json()["changed"] is False
        assert (await c.get("/admin/rooms")).json()["draining"] is True
        cancelled = (await c.delete("/admin/drain")).json()
        assert cancelled["state"] == "serving" and cancelled["changed"] is True
        assert (await c.delete("/admin/drain")).json()["changed"] is False
        drain.stop()
        assert (await c.post("/admin/drain")).status_code == 409
        assert (await c.delete("/admin/drain")).status_code == 409


async def test_no_drain_no_endpoint(calls: LocalRooms) -> None:
    app = create_admin_app(calls.service, QualityMonitor(calls.service), TOKEN)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        assert (await c.get("/admin/drain")).status_code == 404


def test_registries_refuse_unknown_states() -> None:
    registry = LocalNodeRegistry()
    with pytest.raises(ValueError):
        registry.set_state("sleeping")
    registry.set_state(DRAINING)
    assert registry.draining
