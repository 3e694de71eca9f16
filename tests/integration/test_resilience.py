"""Hostile input on the media port, authorization over time, and cleanup after many sessions."""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .harness.aiortc_peer import AiortcPeers
from .harness.server import ServerFactory, ZvonokServer

pytestmark = pytest.mark.timeout(180)


async def debug_state(server: ZvonokServer, gc: bool = False) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        url = server.http_url + "/debug/state" + ("?gc=1" if gc else "")
        return (await http.get(url)).json()  # type: ignore[no-any-return]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def hostile_datagrams(count: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    out: list[bytes] = []
    for i in range(count):
        size = rng.choice([0, 1, 2, 11, 12, 20, 100, 1200, 1500])
        body = bytes(rng.getrandbits(8) for _ in range(size))
        kind = i % 6
        if kind == 0 and size:  # RTP-looking
            body = bytes([0x80 | rng.getrandbits(4), rng.getrandbits(7)]) + body[2:]
        elif kind == 1 and size > 1:  # RTCP-looking (SR/RR/PSFB)
            body = bytes([0x81, rng.choice([200, 201, 205, 206])]) + body[2:]
        elif kind == 2:  # STUN binding request with a bogus USERNAME / no integrity
            username = b"nosuchufrag:x"
            attr = b"\x00\x06" + len(username).to_bytes(2, "big") + username + b"\x00\x00\x00"
            body = b"\x00\x01" + len(attr).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + os.urandom(12)
            body += attr
        elif kind == 3 and size:  # DTLS-looking ClientHello garbage
            body = b"\x16\xfe\xfd" + body[3:]
        out.append(body)
    return out


async def test_hostile_media_port_input_leaves_the_call_alone(
    zvonok_server: ZvonokServer, aiortc_peers: AiortcPeers
) -> None:
    chat = zvonok_server.create_chat(["alice", "bob"])
    a = await aiortc_peers.open(zvonok_server, user="alice", room=chat, color="red")
    b = await aiortc_peers.open(zvonok_server, user="bob", room=chat, color="blue")
    await b.wait_receiving(from_user="alice", color="red", timeout=30)
    target = ("127.0.0.1", zvonok_server.media_port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n, datagram in enumerate(hostile_datagrams(3000)):
            sock.sendto(datagram, target)
            if n % 200 == 0:
                await asyncio.sleep(0.01)
    finally:
        sock.close()
    await b.wait_receiving(from_user="alice", color="red", timeout=15)
    await a.wait_receiving(from_user="bob", color="blue", timeout=15)
    state = await debug_state(zvonok_server)
    assert state["sessions"] == 2 and state["transports"] == 2


async def test_expired_token_keeps_the_call_but_cannot_resume(
    zvonok_server_factory: ServerFactory,
) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_JWT_LEEWAY": "0"})
    group = server.create_group(["alice", "bob"])
    short = server.cli("token", "--user", "alice", "--ttl", "2", "--data-dir", str(server.data_dir))
    url = server.ws_url("group", group)
    headers = {"Authorization": f"Bearer {short.strip()}"}
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": group, "sessionId": "a1"}))
        assert json.loads(await ws.recv())["type"] == "joined"
        await asyncio.sleep(3)  # the token expires during the call: the call goes on
        await ws.send(json.dumps({"type": "dance", "roomId": group, "sessionId": "a1"}))
        while (msg := json.loads(await ws.recv()))["type"] != "error":
            pass
        assert msg["payload"]["code"] == "bad-message"
    with pytest.raises(InvalidStatus) as refused:  # ... but a resume with it is refused
        async with connect(url, additional_headers=headers):
            pass
    assert refused.value.response.status_code == 401
    # Removing bob from the group takes effect at his next join.
    bob = {"Authorization": "Bearer " + server.token("bob")}
    async with connect(url, additional_headers=bob):
        pass
    server.cli(
        "group", "remove", "--id", group, "--members", "bob", "--data-dir", str(server.data_dir)
    )
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=bob):
            pass
    assert refused.value.response.status_code == 403


async def join_leave_cycles_leave_nothing_behind(
    factory: ServerFactory, aiortc_peers: AiortcPeers, warmup: int, cycles: int
) -> None:
    """``warmup`` then ``cycles`` sessions join a group (20 at a time), get their offer and go,
    half with ``leave`` and half by closing the socket. Afterwards nothing is left (rooms,
    sessions, transports, connections, tasks), and the measured ``cycles`` leave fewer than 2
    Python objects per session and 45 MiB of RSS per 1000 sessions, and take under 120 s per
    1000."""
    server = factory.start(
        env={
            "ZVONOK_RESUME_GRACE": "0.5",
            "ZVONOK_CONNECT_BURST": "5000",
            "ZVONOK_CONNECT_RATE": "1000",
            # Ten users cycle 20 sessions at a time, abrupt disconnects linger for the grace.
            "ZVONOK_MAX_SESSIONS_PER_USER": "0",
        }
    )
    group = server.create_group([f"u{i}" for i in range(10)])
    tokens = await asyncio.gather(*(asyncio.to_thread(server.token, f"u{i}") for i in range(10)))
    # Warm up (imports, caches), then take the baseline.
    chat = server.create_chat(["alice", "bob"])
    a = await aiortc_peers.open(server, user="alice", room=chat, color="red")
    b = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
    await b.wait_receiving(from_user="alice", color="red", timeout=30)
    await a.leave()
    await b.leave()
    await asyncio.sleep(1.5)
    baseline = await debug_state(server)

    async def cycle(n: int) -> None:
        url = server.ws_url("group", group) + f"?access_token={tokens[n % 10]}"
        # close_timeout: under a burst, some closing handshakes are not answered by the server for
        # 10 s (an open issue of its own); this test is about what is left behind.
        async with connect(url, close_timeout=1) as ws:
            await ws.send(json.dumps({"type": "join", "roomId": group, "sessionId": f"c{n}"}))
            while json.loads(await ws.recv())["type"] != "offer":
                pass
            if n % 2:
                await ws.send(json.dumps({"type": "leave", "roomId": group, "sessionId": f"c{n}"}))
            # else: abrupt disconnect (socket closed without leave)

    # The allocator's high-water mark settles in the first few hundred sessions (cyclic garbage
    # waits for the collector; measured: RSS +4.9 MB after 100, +5.2 MB after 200 and 300, then
    # +1 MB over 1000 more); memory must then stay flat.
    for batch in range(warmup // 20):
        await asyncio.gather(*(cycle(100_000 + batch * 20 + i) for i in range(20)))
    await asyncio.sleep(1.5)
    settled = await debug_state(server, gc=True)
    objects_before, types_before = settled["gcObjects"], settled["gcTypes"]
    # the serving process froze its start-up objects (heap.settle_heap): a full collection
    # walks only what came after (the empty embedded node: ~45,000 objects frozen)
    assert settled["gcFrozen"] > 20_000, settled["gcFrozen"]
    rss_before = rss_kib(server.process.pid)
    started = time.monotonic()
    for batch in range(cycles // 20):
        await asyncio.gather(*(cycle(batch * 20 + i) for i in range(20)))
        assert time.monotonic() - started < 120 * cycles / 1000
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = await debug_state(server)
        if not state["rooms"] and state["sessions"] == 0 and state["transports"] == 0:
            break
        await asyncio.sleep(0.5)
    assert state["rooms"] == {} and state["sessions"] == 0 and state["transports"] == 0
    assert state["connections"] == 0
    assert state["tasks"] <= baseline["tasks"]
    await asyncio.sleep(1.5)  # as before the baseline: the sessions' last callbacks have run
    after = await debug_state(server, gc=True)
    objects_after = after["gcObjects"]
    grown = {
        name: count - types_before.get(name, 0)
        for name, count in after["gcTypes"].items()
        if count - types_before.get(name, 0) > cycles // 20
    }
    assert objects_after - objects_before < 2 * cycles, (objects_before, objects_after, grown)
    # RSS: the allocator keeps its high-water mark (cyclic garbage waits for the collector), so
    # allow for that, but the sessions must not cost what a leak would (~70 KiB each).
    growth = rss_kib(server.process.pid) - rss_before
    assert growth < 45 * 1024 * cycles // 1000, f"RSS grew by {growth} KiB over {cycles} sessions"


async def test_300_join_leave_cycles_leave_nothing_behind(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    """The short form of the soak below, which CI runs: the same checks, per session, over 300
    sessions after 100 to warm up."""
    await join_leave_cycles_leave_nothing_behind(
        zvonok_server_factory, aiortc_peers, warmup=100, cycles=300
    )


@pytest.mark.soak
async def test_1000_join_leave_cycles_leave_nothing_behind(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    """The long form (``pytest -m soak``): 1000 sessions after 300 to warm up."""
    await join_leave_cycles_leave_nothing_behind(
        zvonok_server_factory, aiortc_peers, warmup=300, cycles=1000
    )


async def test_detached_session_lives_while_its_media_flows(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_RESUME_GRACE": "1"})
    chat = server.create_chat(["alice", "bob"])
    a = await aiortc_peers.open(server, user="alice", room=chat, color="red")
    b = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
    await b.wait_receiving(from_user="alice", color="red", timeout=30)
    await a.close_socket()  # signaling gone, media still flowing: not inactive
    await asyncio.sleep(7)
    assert (await b.report()).messages("participant-left") == 0
    await b.wait_receiving(from_user="alice", color="red", timeout=10)
    await a.close()  # now the media goes too
    await b.wait_participant("alice", present=False, timeout=15)
