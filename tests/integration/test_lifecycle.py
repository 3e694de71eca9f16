"""Process lifecycle: SIGTERM tells every session to reconnect and the server exits in time."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .harness.server import ZvonokServer

pytestmark = pytest.mark.timeout(60)


async def test_sigterm_tells_sessions_and_exits(zvonok_server: ZvonokServer) -> None:
    server = zvonok_server
    chat = server.create_chat(["alice", "bob"])
    url = server.ws_url("chat", chat) + "?access_token=" + server.token("alice")
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": chat, "sessionId": "a1"}))
        assert json.loads(await ws.recv())["type"] == "joined"
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        seen = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        errors = [m["payload"] for m in seen if m["type"] == "error"]
        assert errors and errors[-1]["code"] == "shutdown"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    await asyncio.to_thread(server.process.wait, 15)
    assert time.monotonic() - started < 15
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(server.http_url + "/healthz")
