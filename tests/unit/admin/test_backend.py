"""The admin backends over two real room services linked like a front and two workers.

Each "worker" is a real ``RoomService`` on its own ``MediaWorker`` behind a ``LocalAdminBackend``;
the front reaches it through ``RelayAdminBackend`` over an in-process ``call`` that JSON-encodes
both ways and dispatches with ``serve_admin``, as the worker link does. A worker whose link is
down raises; one that hangs is cut by the fanout's timeout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from zvonok.admin.api import create_admin_app
from zvonok.admin.backend import (
    AdminBackend,
    FanoutAdminBackend,
    LocalAdminBackend,
    RelayAdminBackend,
    RelayedWorkers,
    WorkerUnavailable,
    serve_admin,
)
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.quality import QualityMonitor
from zvonok.rooms.service import RoomService

from ..fakes import RecordingSink

TOKEN = "operator-token"
CHAT = RoomKey(RoomKind.CHAT, "1")
GROUP = RoomKey(RoomKind.GROUP, "9")


@dataclass
class Worker:
    """One worker process's rooms and the front's link to them."""

    rooms: RoomService
    media: MediaWorker
    down: bool = False
    hang: bool = False
    calls: list[str] = field(default_factory=list)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """The link: JSON in, dispatch on the worker, JSON out; raises when the link is down."""
        self.calls.append(method)
        if self.down:
            raise ConnectionError("worker link closed")
        if self.hang:
            await asyncio.Event().wait()
        backend = LocalAdminBackend(self.rooms, QualityMonitor(self.rooms))
        reply = await serve_admin(backend, method, json.loads(json.dumps(params)))
        return json.loads(json.dumps(reply))


Join = Callable[[str, RoomKey, str], Awaitable[RecordingSink]]


@pytest.fixture
async def workers() -> AsyncIterator[dict[str, Worker]]:
    made: dict[str, Worker] = {}
    for name in ("w0", "w1"):
        media = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
        await media.start()
        rooms = RoomService(
            worker=media,
            sessions=LocalSessionDirectory(),
            rooms=LocalRoomDirectory(),
            ice_servers=[],
        )
        made[name] = Worker(rooms, media)
    yield made
    for worker in made.values():
        await worker.rooms.close()
        await worker.media.close()


async def join(worker: Worker, key: RoomKey, user: str) -> RecordingSink:
    sink = RecordingSink()
    await worker.rooms.join(key, UserId(user), SessionId(f"s-{user}"), key.id, sink)
    return sink


def fanout(
    workers: dict[str, Worker], locate: Callable[[RoomKey], str | None] | None = None
) -> FanoutAdminBackend:
    relays: dict[str, AdminBackend] = {n: RelayAdminBackend(w.call) for n, w in workers.items()}
    return FanoutAdminBackend(relays, locate, timeout=0.2)


async def test_relay_answers_exactly_what_the_local_backend_does(
    workers: dict[str, Worker],
) -> None:
    w0 = workers["w0"]
    await join(w0, GROUP, "alice")
    local = LocalAdminBackend(w0.rooms, QualityMonitor(w0.rooms))
    relay = RelayAdminBackend(w0.call)
    assert await relay.list_rooms() == await local.list_rooms()
    assert await relay.get_room(GROUP) == await local.get_room(GROUP)
    assert await relay.get_room(CHAT) is None
    assert await relay.get_session("s-alice") == await local.get_session("s-alice")
    assert await relay.set_muted("s-alice", "t-none", True) is None
    assert await relay.kick("s-nobody") is False
    with pytest.raises(ValueError, match="unknown admin RPC method"):
        await serve_admin(local, "admin.reboot", {})
    with pytest.raises(ValueError, match="'sessionId' must be a string"):
        await serve_admin(local, "admin.kick", {"sessionId": 7})


async def test_listing_merges_every_worker_and_tags_each_room(
    workers: dict[str, Worker],
) -> None:
    await join(workers["w0"], CHAT, "alice")
    await join(workers["w0"], CHAT, "bob")
    await join(workers["w1"], GROUP, "carol")
    listing = await fanout(workers).list_rooms()
    assert listing["sessions"] == 3 and listing["draining"] is False
    assert listing["unavailableWorkers"] == []
    assert [(r["room"], r["worker"], len(r["participants"])) for r in listing["rooms"]] == [
        ("chat:1", "w0", 2),
        ("group:9", "w1", 1),
    ]
    workers["w1"].rooms.closing = True
    assert (await fanout(workers).list_rooms())["draining"] is True


async def test_a_silent_worker_is_named_not_a_failure(workers: dict[str, Worker]) -> None:
    await join(workers["w0"], CHAT, "alice")
    await join(workers["w1"], GROUP, "carol")
    workers["w1"].down = True
    listing = await fanout(workers).list_rooms()
    assert [r["room"] for r in listing["rooms"]] == ["chat:1"]
    assert listing["sessions"] == 1 and listing["unavailableWorkers"] == ["w1"]
    workers["w1"].down, workers["w0"].hang = False, True
    listing = await fanout(workers).list_rooms()  # cut by the timeout, not waited for
    assert [r["room"] for r in listing["rooms"]] == ["group:9"]
    assert listing["unavailableWorkers"] == ["w0"]


async def test_rooms_go_to_the_worker_located_else_to_each(workers: dict[str, Worker]) -> None:
    await join(workers["w0"], CHAT, "alice")
    sink = await join(workers["w1"], GROUP, "carol")
    placed = {GROUP: "w1"}
    located = fanout(workers, placed.get)
    room = await located.get_room(GROUP)
    assert room is not None and room["worker"] == "w1" and room["id"] == "9"
    assert workers["w0"].calls == []  # located: the other worker was not asked
    unlocated = fanout(workers)
    chat = await unlocated.get_room(CHAT)
    assert chat is not None and chat["worker"] == "w0"
    assert await unlocated.get_room(RoomKey(RoomKind.CHAT, "404")) is None
    assert await located.close_room(GROUP) == 1
    assert sink.closed == (4004, "room-closed")
    assert workers["w1"].rooms.rooms == {}
    assert await unlocated.close_room(GROUP) is None
    workers["w0"].down = True
    with pytest.raises(WorkerUnavailable) as raised:
        await unlocated.get_room(CHAT)
    assert raised.value.workers == ["w0"]


async def test_session_operations_find_the_worker(workers: dict[str, Worker]) -> None:
    await join(workers["w0"], CHAT, "alice")
    sink = await join(workers["w1"], GROUP, "carol")
    backend = fanout(workers)
    session = await backend.get_session("s-carol")
    assert session is not None and (session["room"], session["worker"]) == ("group:9", "w1")
    assert await backend.get_session("s-nobody") is None
    assert await backend.set_muted("s-carol", "t-none", True) is None
    assert await backend.kick("s-carol") is True
    assert sink.closed == (4003, "kicked")
    assert await backend.kick("s-carol") is False
    workers["w0"].down = True
    with pytest.raises(WorkerUnavailable):
        await backend.kick("s-carol")  # maybe on w0: not a plain "no such session"


async def test_the_api_over_the_fanout(workers: dict[str, Worker]) -> None:
    await join(workers["w0"], CHAT, "alice")
    await join(workers["w1"], GROUP, "carol")
    app = create_admin_app(fanout(workers, {CHAT: "w0", GROUP: "w1"}.get), TOKEN)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        assert (await c.get("/admin/rooms", headers={"Authorization": "x"})).status_code == 401
        listing = (await c.get("/admin/rooms")).json()
        assert {r["room"]: r["worker"] for r in listing["rooms"]} == {
            "chat:1": "w0",
            "group:9": "w1",
        }
        assert (await c.get("/admin/rooms/group:9")).json()["worker"] == "w1"
        assert (await c.get("/admin/sessions/s-alice")).json()["worker"] == "w0"
        workers["w1"].down = True
        assert (await c.get("/admin/rooms")).json()["unavailableWorkers"] == ["w1"]
        gone = await c.get("/admin/rooms/group:9")
        assert gone.status_code == 503
        assert gone.json()["detail"]["unavailableWorkers"] == ["w1"]
        assert (await c.post("/admin/sessions/s-nobody/kick")).status_code == 503
        workers["w1"].down = False
        assert (await c.post("/admin/sessions/s-nobody/kick")).status_code == 404
        closed = (await c.delete("/admin/rooms/chat:1")).json()
        assert closed == {"ok": True, "changed": True, "sessions": 1}


async def test_relayed_workers_follow_the_current_links(workers: dict[str, Worker]) -> None:
    await join(workers["w0"], CHAT, "alice")
    await join(workers["w1"], GROUP, "carol")
    links: dict[str, Callable[[str, dict[str, Any]], Awaitable[Any]]] = {"w0": workers["w0"].call}
    backend = FanoutAdminBackend(RelayedWorkers(lambda: links), timeout=0.2)
    assert [r["worker"] for r in (await backend.list_rooms())["rooms"]] == ["w0"]
    links["w1"] = workers["w1"].call  # a worker (re)started: its new link
    assert [r["worker"] for r in (await backend.list_rooms())["rooms"]] == ["w0", "w1"]
    del links["w0"]
    assert await backend.get_session("s-alice") is None


async def test_a_worker_answering_nonsense_counts_as_silent(workers: dict[str, Worker]) -> None:
    await join(workers["w0"], CHAT, "alice")

    async def confused(method: str, params: dict[str, Any]) -> Any:
        return {"rooms": [1]} if method == "admin.list_rooms" else "yes"

    relays: dict[str, AdminBackend] = {
        "w0": RelayAdminBackend(workers["w0"].call),
        "odd": RelayAdminBackend(confused),
    }
    backend = FanoutAdminBackend(relays, timeout=0.2)
    listing = await backend.list_rooms()
    assert [r["room"] for r in listing["rooms"]] == ["chat:1"]
    assert listing["unavailableWorkers"] == ["odd"]
    session = await backend.get_session("s-alice")  # found on w0: the odd one does not matter
    assert session is not None and session["worker"] == "w0"
    with pytest.raises(WorkerUnavailable):
        await backend.kick("s-nobody")
