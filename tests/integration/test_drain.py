"""Graceful drain (docs/operations.md "Stopping a node: drain") on a real server: after SIGTERM a
live call goes on (media both ways, a third party joins its room), a new room is refused with
``node-draining``, and the node exits once the call has ended; at ``drain_timeout`` the sessions
still there get ``node-draining`` and close 1012; ``zvonok drain`` and ``zvonok drain --cancel``
through the admin API, and a SIGTERM during such a drain joins it. The fast stops (a second
SIGTERM, SIGINT) are in test_lifecycle.py. Runs the same with ``ZVONOK_WORKERS=2`` (the front
drains, the workers keep their calls).
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .harness.aiortc_peer import AiortcPeers
from .harness.messages import recv_until
from .harness.server import ServerFactory, ZvonokServer

pytestmark = pytest.mark.timeout(120)

ADMIN_TOKEN = "drain-test-operator-token"


async def get(server: ZvonokServer, path: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(server.http_url + path, timeout=5)


async def wait_ready_status(server: ZvonokServer, code: int, within: float = 5.0) -> Any:
    """Until ``/readyz`` answers ``code``; its JSON body."""
    deadline = time.monotonic() + within
    while True:
        response = await get(server, "/readyz")
        if response.status_code == code:
            return response.json()
        assert time.monotonic() < deadline, f"/readyz still {response.status_code}"
        await asyncio.sleep(0.05)


def gauge(metrics: str, name: str) -> list[float]:
    """Every sample of an unlabelled gauge (or, on a front, of each worker's)."""
    return [float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", metrics, re.M)]


@asynccontextmanager
async def joined(
    server: ZvonokServer, user: str, kind: str, room: str, session: str
) -> AsyncIterator[tuple[ClientConnection, dict[str, Any]]]:
    """A signaling-only session that got ``joined``: its socket and that message."""
    token = await asyncio.to_thread(server.token, user)
    async with connect(server.ws_url(kind, room) + "?access_token=" + token) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": room, "sessionId": session}))
        yield ws, await recv_until(ws, "joined")


async def refused(server: ZvonokServer, user: str, kind: str, room: str) -> tuple[str, int]:
    """A join that is refused: the error code and the close code."""
    token = await asyncio.to_thread(server.token, user)
    async with connect(server.ws_url(kind, room) + "?access_token=" + token) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": room, "sessionId": f"{user}-x"}))
        error = await recv_until(ws, "error")
        return error["payload"]["code"], await closed_with(ws)


async def closed_with(ws: ClientConnection, wait: float = 5.0) -> int:
    """Read until the server closes the socket; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), wait)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


async def zvonok_drain(server: ZvonokServer, *args: str) -> str:
    """``zvonok drain ARGS`` against the server's admin API; its output."""
    argv = [sys.executable, "-m", "zvonok", "drain", "--url", server.http_url, *args]
    done = await asyncio.to_thread(
        subprocess.run,
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"ZVONOK_ADMIN_TOKEN": ADMIN_TOKEN, "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_sigterm_lets_a_live_call_go_on_and_exits_when_it_ends(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    server = zvonok_server_factory.start()
    group = server.create_group(["alice", "bob", "carol"])
    other = server.create_group(["dave"])
    alice = await aiortc_peers.open(server, "alice", group, "red", kind="group")
    bob = await aiortc_peers.open(server, "bob", group, "blue", kind="group")
    await bob.wait_receiving(from_user="alice", color="red", timeout=30)
    await alice.wait_receiving(from_user="bob", color="blue", timeout=30)

    server.process.send_signal(signal.SIGTERM)
    assert await wait_ready_status(server, 503) == {"status": "draining"}
    assert (await get(server, "/livez")).status_code == 200
    metrics = (await get(server, "/metrics")).text
    assert gauge(metrics, "zvonok_draining") and min(gauge(metrics, "zvonok_draining")) == 1
    assert all(800 < left <= 900 for left in gauge(metrics, "zvonok_drain_seconds_left"))

    # The call goes on: media both ways, and a third party joins its room.
    await bob.wait_receiving(from_user="alice", color="red", timeout=10)
    await alice.wait_receiving(from_user="bob", color="blue", timeout=10)
    async with joined(server, "carol", "group", group, "carol-1") as (carol, hello):
        assert {p["userId"] for p in hello["payload"]["participants"]} == {"alice", "bob"}
        await carol.send(json.dumps({"type": "leave", "roomId": group, "sessionId": "carol-1"}))
    # A new room is not placed here.
    assert await refused(server, "dave", "group", other) == ("node-draining", 1012)
    await asyncio.sleep(1.0)
    assert server.process.poll() is None, "exited while a call was live"
    assert alice.server_errors == [] and bob.server_errors == []
    assert alice.closes == [] and bob.closes == []

    # The call ends: the node exits (as SIGTERM ends it) without waiting for drain_timeout.
    ended = time.monotonic()
    await alice.leave()
    await bob.leave()
    code = await asyncio.to_thread(server.process.wait, 10)
    assert code == -signal.SIGTERM
    assert time.monotonic() - ended < 5


async def test_drain_timeout_tells_the_sessions_left_and_exits(
    zvonok_server_factory: ServerFactory,
) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_DRAIN_TIMEOUT": "3"})
    chat = server.create_chat(["alice", "bob"])
    async with (
        joined(server, "alice", "chat", chat, "a1") as (alice, _),
        joined(server, "bob", "chat", chat, "b1") as (bob, _),
    ):
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        await wait_ready_status(server, 503)
        for ws in (alice, bob):
            error = await recv_until(ws, "error", wait=10)
            assert error["payload"]["code"] == "node-draining"
            assert error["payload"]["retryAfterMs"] == 1000
            assert await closed_with(ws) == 1012
        assert 2.5 < time.monotonic() - started < 8
    assert await asyncio.to_thread(server.process.wait, 10) == -signal.SIGTERM
    assert time.monotonic() - started < 12


async def test_zvonok_drain_and_cancel(zvonok_server_factory: ServerFactory) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_ADMIN_TOKEN": ADMIN_TOKEN})
    chat = server.create_chat(["alice", "bob"])
    later = server.create_chat(["carol", "dave"])
    async with joined(server, "alice", "chat", chat, "a1") as (alice, _):
        out = await zvonok_drain(server)
        assert re.fullmatch(r"draining: rooms still live; drain_timeout ends it in \d+ s", out)
        assert await wait_ready_status(server, 503) == {"status": "draining"}
        assert await refused(server, "carol", "chat", later) == ("node-draining", 1012)
        async with joined(server, "bob", "chat", chat, "b1") as (_, hello):
            assert [p["userId"] for p in hello["payload"]["participants"]] == ["alice"]
        assert (await zvonok_drain(server, "--status")).startswith("draining:")

        assert await zvonok_drain(server, "--cancel") == "serving"
        assert (await wait_ready_status(server, 200))["status"] == "ready"
        async with joined(server, "carol", "chat", later, "c1") as (carol, _):
            await carol.send(json.dumps({"type": "leave", "roomId": later, "sessionId": "c1"}))
        metrics = (await get(server, "/metrics")).text
        assert gauge(metrics, "zvonok_draining") and max(gauge(metrics, "zvonok_draining")) == 0
        await alice.send(json.dumps({"type": "leave", "roomId": chat, "sessionId": "a1"}))
        await closed_with(alice)
    assert server.process.poll() is None
    # bob's session (its socket gone) waits for a resume: end it, then drain the empty node.
    async with joined(server, "bob", "chat", chat, "b1") as (bob, hello):
        assert hello["payload"]["resumed"] is True
        await bob.send(json.dumps({"type": "leave", "roomId": chat, "sessionId": "b1"}))
    started = time.monotonic()
    out = await zvonok_drain(server)
    assert out.startswith("draining") or out == "stopping"
    # A drain `zvonok drain` began exits with status 0 once the rooms are gone.
    assert await asyncio.to_thread(server.process.wait, 10) == 0
    assert time.monotonic() - started < 5


async def test_a_sigterm_during_zvonok_drain_joins_that_drain(
    zvonok_server_factory: ServerFactory,
) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_ADMIN_TOKEN": ADMIN_TOKEN})
    chat = server.create_chat(["alice", "bob"])
    async with joined(server, "alice", "chat", chat, "a1") as (alice, _):
        await zvonok_drain(server)
        server.process.send_signal(signal.SIGTERM)  # systemctl stop after zvonok drain
        await asyncio.sleep(1.0)
        assert server.process.poll() is None, "the call was cut"
        assert (await zvonok_drain(server, "--status")).startswith("draining:")
        await alice.send(json.dumps({"type": "leave", "roomId": chat, "sessionId": "a1"}))
        assert await closed_with(alice) == 1000
    # the call is over: the node exits, as a SIGTERM ends it
    assert await asyncio.to_thread(server.process.wait, 10) == -signal.SIGTERM
