"""The admin API over ASGI (no sockets): the token, listing, kick, close, 404s, OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from zvonok.admin.api import create_admin_app
from zvonok.cluster.local import LocalRoomDirectory, LocalSessionDirectory
from zvonok.ids import RoomKey, RoomKind, SessionId, UserId
from zvonok.media.worker import MediaWorker
from zvonok.rooms.quality import QualityMonitor
from zvonok.rooms.service import RoomService

from ..fakes import RecordingSink

TOKEN = "operator-token"
ROOM = RoomKey(RoomKind.GROUP, "9")


@pytest.fixture
async def setup() -> AsyncIterator[tuple[RoomService, httpx.AsyncClient]]:
    worker = MediaWorker(host="127.0.0.1", port=0, announce_ips=["127.0.0.1"])
    await worker.start()
    rooms = RoomService(
        worker=worker, sessions=LocalSessionDirectory(), rooms=LocalRoomDirectory(), ice_servers=[]
    )
    app = create_admin_app(rooms, QualityMonitor(rooms), TOKEN)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as c:
        yield rooms, c
    await rooms.close()
    await worker.close()


async def test_token_is_required(setup: tuple[RoomService, httpx.AsyncClient]) -> None:
    _, client = setup
    assert (
        await client.get("/admin/rooms", headers={"Authorization": "Bearer nope"})
    ).status_code == 401
    assert (await client.get("/admin/rooms", headers={"Authorization": ""})).status_code == 401
    assert (await client.get("/admin/rooms")).json() == {
        "rooms": [],
        "sessions": 0,
        "draining": False,
    }


async def test_list_get_kick_close(setup: tuple[RoomService, httpx.AsyncClient]) -> None:
    rooms, client = setup
    sinks = {u: RecordingSink() for u in ("alice", "bob", "carol")}
    for user, sink in sinks.items():
        await rooms.join(ROOM, UserId(user), SessionId(f"s-{user}"), "9", sink)
    listing = (await client.get("/admin/rooms")).json()
    assert listing["sessions"] == 3
    (room,) = listing["rooms"]
    assert room["room"] == "group:9" and len(room["participants"]) == 3
    assert room["participants"][0]["quality"]["state"] == "new"
    assert (await client.get("/admin/rooms/group:9")).json()["id"] == "9"
    assert (await client.get("/admin/rooms/group:404")).status_code == 404
    assert (await client.get("/admin/rooms/nonsense")).status_code == 404
    assert (await client.get("/admin/sessions/s-bob")).json()["room"] == "group:9"
    assert (await client.post("/admin/sessions/s-bob/kick")).json()["ok"] is True
    assert sinks["bob"].closed == (4003, "kicked")
    assert (await client.post("/admin/sessions/s-bob/kick")).status_code == 404
    assert (await client.post("/admin/sessions/s-alice/tracks/t1/mute")).status_code == 404
    closed = (await client.delete("/admin/rooms/group:9")).json()
    assert closed == {"ok": True, "changed": True, "sessions": 2}
    assert rooms.rooms == {}


async def test_openapi_at_both_paths(setup: tuple[RoomService, httpx.AsyncClient]) -> None:
    _, client = setup
    spec = (await client.get("/admin/openapi.json")).json()
    assert "/admin/sessions/{session_id}/kick" in spec["paths"]
    assert not any(path.endswith(("/docs", "/openapi.json")) for path in spec["paths"])
    assert (await client.get("/openapi.json")).json() == spec
    assert "swagger" in (await client.get("/docs")).text.lower()
    assert (await client.get("/admin/docs")).status_code == 200


@pytest.mark.parametrize("path", ["/docs", "/openapi.json", "/admin/docs", "/admin/openapi.json"])
@pytest.mark.parametrize("authorization", ["", "Bearer nope", f"Basic {TOKEN}", TOKEN])
async def test_openapi_and_docs_need_the_token(
    setup: tuple[RoomService, httpx.AsyncClient], path: str, authorization: str
) -> None:
    _, client = setup
    response = await client.get(path, headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "paths" not in response.text and "swagger" not in response.text.lower()
