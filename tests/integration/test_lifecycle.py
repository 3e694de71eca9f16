"""Process lifecycle: the fast stops. SIGINT (Ctrl-C), or a second SIGTERM while the first one's
drain runs, tells every session to reconnect (`shutdown`, close 1012) and the server exits in
time. The drain itself (a first SIGTERM) is in test_drain.py."""

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


async def wait_draining(server: ZvonokServer) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(100):
            if (await http.get(server.http_url + "/readyz")).status_code == 503:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("/readyz never turned 503 after SIGTERM")


@pytest.mark.parametrize("signals", ["SIGTERM,SIGTERM", "SIGINT"])
async def test_a_fast_stop_tells_sessions_and_exits(
    zvonok_server: ZvonokServer, signals: str
) -> None:
    server = zvonok_server
    chat = server.create_chat(["alice", "bob"])
    url = server.ws_url("chat", chat) + "?access_token=" + server.token("alice")
    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": chat, "sessionId": "a1"}))
        assert json.loads(await ws.recv())["type"] == "joined"
        started = time.monotonic()
        *first, last = [signal.Signals[name] for name in signals.split(",")]
        for sig in first:  # SIGTERM: a drain (the live call would keep the node up)
            server.process.send_signal(sig)
            await wait_draining(server)
            started = time.monotonic()
        server.process.send_signal(last)
        seen = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        errors = [m["payload"] for m in seen if m["type"] == "error"]
        assert errors and errors[-1]["code"] == "shutdown"
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    await asyncio.to_thread(server.process.wait, 15)
    assert time.monotonic() - started < 6
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(server.http_url + "/healthz")
