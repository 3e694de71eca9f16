"""The HTTP/WebSocket port under connection exhaustion, and the exact inactivity timeout, against a
real ``zvonok serve`` with real sockets.

``RawWebSocket`` is a WebSocket client on a plain socket that does only what it is told: the
handshake and masked frames, never a pong. Attackers are plain TCP sockets (idle, half a request
line, one header every few seconds) from 127.0.0.1; the real client that must still get into a
call during the attack connects from 127.0.0.2 with the ``websockets`` library. The server's file
descriptors are read from ``/proc/<pid>/fd``.

The exact 60 s inactivity timeout has to wait a real minute: that wait runs in a thread, on a
server of its own, from the module's first test on (``silent_client``), and its test, the
module's last, only collects the result, so the other tests' half minute is not added to it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .harness.messages import recv_until
from .harness.server import ServerFactory, ZvonokServer

pytestmark = pytest.mark.timeout(150)


class RawWebSocket:
    """A WebSocket client on a blocking socket: handshake, masked text frames, frame reads."""

    def __init__(self, server: ZvonokServer, path: str, token: str, source: str = "127.0.0.1"):
        self.sock = socket.create_connection(
            (server.host, server.port), timeout=10, source_address=(source, 0)
        )
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"closed during the handshake: {head!r}")
            head += chunk
        head, _, self._buffer = head.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0]
        assert b" 101 " in status, status

    def send_text(self, text: str) -> None:
        payload = text.encode()
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, 0x80 | size)
        else:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:count], self._buffer[count:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload (server frames are unmasked, unfragmented)."""
        first, second = self._read(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", self._read(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", self._read(8))
        return first & 0x0F, self._read(size)

    def close(self) -> None:
        self.sock.close()


def call_path(kind: str, room: str) -> str:
    return f"/api/v1/{kind}/{room}/call"


SILENT_TEST = "test_silent_client_is_ended_60_seconds_after_its_last_frame"
Ended = tuple[dict[str, Any], float]


async def silent_client_ends(
    server: ZvonokServer, chat: str, bob_token: str, alice_token: str
) -> Ended:
    """Bob joins ``chat``; alice joins on a raw socket, then neither reads, answers pings nor
    sends media. Bob's ``participant-left`` for her, and the seconds from her last frame to it."""
    async with connect(server.ws_url("chat", chat) + "?access_token=" + bob_token) as bob:
        await bob.send(json.dumps({"type": "join", "roomId": chat, "sessionId": "bob-1"}))
        await recv_until(bob, "joined", 10)
        alice = await asyncio.to_thread(RawWebSocket, server, call_path("chat", chat), alice_token)
        try:
            alice.send_text(json.dumps({"type": "join", "roomId": chat, "sessionId": "alice-1"}))
            last_frame = time.monotonic()
            # From here alice reads nothing and answers no ping; her socket stays open.
            joined = await recv_until(bob, "participant-joined", 10)
            assert joined["payload"]["sessionId"] == "alice-1"
            left = await recv_until(bob, "participant-left", 90)
            return left, time.monotonic() - last_frame
        finally:
            alice.close()


@pytest.fixture(scope="module")
def silent_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[Ended]]:
    """The silent client's minute, on a server of its own with default settings, run in a
    thread with its own event loop (``silent_client_ends``); the module's other tests run
    meanwhile (``start_the_silent_client_first``), and nothing they do on their loop can delay
    what it measures. At the end its server is stopped and its log must hold no error."""
    factory = ServerFactory(tmp_path_factory.mktemp("silent"))
    runner = ThreadPoolExecutor(1, thread_name_prefix="silent-client")
    try:
        server = factory.start()
        chat = server.create_chat(["alice", "bob"])
        bob_token, alice_token = server.token("bob"), server.token("alice")
        yield runner.submit(asyncio.run, silent_client_ends(server, chat, bob_token, alice_token))
    finally:
        runner.shutdown(wait=True)  # the run ends by itself, within 90 s of its join
        factory.close()
    factory.check_logs()


@pytest.fixture(scope="module", autouse=True)
def start_the_silent_client_first(request: pytest.FixtureRequest) -> None:
    """Starts ``silent_client`` with the module's first test when its test is selected: its 60 s
    of silence pass while the other tests run (its test is the module's last)."""
    if any(
        getattr(item, "module", None) is request.module
        and getattr(item, "originalname", None) == SILENT_TEST
        for item in request.session.items
    ):
        request.getfixturevalue("silent_client")


async def test_silence_is_counted_from_the_last_frame_wherever_it_falls_between_pings(
    zvonok_server_factory: ServerFactory,
) -> None:
    """Scaled down (inactivity 8 s = 6 s silence + 2 s grace, a ping every 2 s): a frame sent
    between two unanswered pings moves the end to exactly 8 s after it."""
    server = zvonok_server_factory.start(
        env={
            "ZVONOK_INACTIVITY_TIMEOUT": "8",
            "ZVONOK_RESUME_GRACE": "2",
            "ZVONOK_PING_INTERVAL": "2",
        }
    )
    chat = await asyncio.to_thread(server.create_chat, ["alice", "bob"])
    bob_token, alice_token = await asyncio.gather(
        asyncio.to_thread(server.token, "bob"), asyncio.to_thread(server.token, "alice")
    )
    async with connect(server.ws_url("chat", chat) + "?access_token=" + bob_token) as bob:
        await bob.send(json.dumps({"type": "join", "roomId": chat, "sessionId": "bob-1"}))
        await recv_until(bob, "joined", 10)
        alice = await asyncio.to_thread(RawWebSocket, server, call_path("chat", chat), alice_token)
        try:
            alice.send_text(json.dumps({"type": "join", "roomId": chat, "sessionId": "alice-1"}))
            await recv_until(bob, "participant-joined", 10)
            await asyncio.sleep(3.3)  # past the first unanswered ping, before the second
            alice.send_text("{}")  # a (bad) message is a sign of life too
            last_frame = time.monotonic()
            left = await recv_until(bob, "participant-left", 20)
            elapsed = time.monotonic() - last_frame
        finally:
            alice.close()
    assert left["payload"]["sessionId"] == "alice-1"
    assert 7.5 <= elapsed <= 8.5, f"ended {elapsed:.2f} s after the last frame, not 8 s"


def fd_targets(server: ZvonokServer) -> list[str]:
    """What the server's descriptors point at (``socket:[inode]``, pipes, files), except the
    embedded database's files in its data dir: its connection pool opens connections on demand
    as concurrent joins need them (bounded by the pool), which is not what these tests measure."""
    root = f"/proc/{server.process.pid}/fd"
    data_dir = str(server.data_dir.resolve())
    out = []
    for name in os.listdir(root):
        try:
            target = os.readlink(f"{root}/{name}")
        except OSError:
            continue
        if not target.startswith(data_dir):
            out.append(target)
    return sorted(out)


def open_fds(server: ZvonokServer) -> int:
    return len(fd_targets(server))


async def fds_back_to(server: ZvonokServer, baseline: int, wait: float = 10.0) -> None:
    deadline = time.monotonic() + wait
    count = open_fds(server)
    while count > baseline and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        count = open_fds(server)
    assert count <= baseline, f"{count} fds open, baseline {baseline}: {fd_targets(server)}"


async def tcp(server: ZvonokServer, source: str = "127.0.0.1") -> tuple[Any, Any]:
    return await asyncio.open_connection(server.host, server.port, local_addr=(source, 0))


async def call_and_offer(server: ZvonokServer, chat: str, user: str, source: str) -> None:
    """A real client from ``source`` joins ``chat`` and gets ``joined`` and an ``offer``."""
    token = await asyncio.to_thread(server.token, user)
    url = server.ws_url("chat", chat) + "?access_token=" + token
    async with connect(url, local_addr=(source, 0), open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": chat, "sessionId": f"{user}-s"}))
        await recv_until(ws, "joined", 5)
        await recv_until(ws, "offer", 5)
        await ws.send(json.dumps({"type": "leave", "roomId": chat, "sessionId": f"{user}-s"}))


async def cut_after(reader: Any, started: float) -> tuple[float, bytes]:
    """Read until the server closes; when (after ``started``) and what it sent."""
    data = b""
    try:
        data = await asyncio.wait_for(reader.read(), 30)
    except ConnectionResetError:
        pass
    return time.monotonic() - started, data


async def test_slow_request_heads_and_websockets_that_never_join_are_cut_at_10_seconds(
    zvonok_server: ZvonokServer,
) -> None:
    """Default settings. An idle socket, half a request line, and a slowloris sending one header
    every 5 s get ``408`` and are closed 10 s after they connected; an authenticated WebSocket
    that sends no valid ``join`` (none, or one for another room) gets ``error join-timeout`` and
    close 1008 10 s after it was accepted; one that joined in time stays. Afterwards the
    server's file descriptors are back to the baseline."""
    server = zvonok_server
    chat = await asyncio.to_thread(server.create_chat, ["alice", "bob"])
    await call_and_offer(server, chat, "alice", "127.0.0.1")  # warm up: database, media
    baseline = open_fds(server)
    token = await asyncio.to_thread(server.token, "bob")
    url = server.ws_url("chat", chat) + "?access_token=" + token

    async def idle() -> tuple[float, bytes]:
        started = time.monotonic()
        reader, writer = await tcp(server)
        result = await cut_after(reader, started)
        writer.close()
        return result

    async def half_line() -> tuple[float, bytes]:
        started = time.monotonic()
        reader, writer = await tcp(server)
        writer.write(b"GET /heal")
        result = await cut_after(reader, started)
        writer.close()
        return result

    async def slowloris() -> tuple[float, bytes]:
        started = time.monotonic()
        reader, writer = await tcp(server)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")

        async def trickle() -> None:
            for i in range(10):
                await asyncio.sleep(3.0 if i == 0 else 5.0)  # at 3, 8, 13, ... s
                writer.write(b"X-Slow-%d: 1\r\n" % i)

        trickling = asyncio.create_task(trickle())
        result = await cut_after(reader, started)
        trickling.cancel()
        writer.close()
        return result

    async def never_joins(join: bool) -> tuple[float, str, int | None]:
        async with connect(url, open_timeout=5) as ws:
            started = time.monotonic()
            if join:  # a join for another room is refused and is not a valid join
                other = {"type": "join", "roomId": "999", "sessionId": "bob-x"}
                await ws.send(json.dumps(other))
                assert (await recv_until(ws, "error", 5))["payload"]["code"] == "room-mismatch"
            error = await recv_until(ws, "error", 20)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            return time.monotonic() - started, error["payload"]["code"], ws.close_code

    async def joins_in_time() -> None:
        async with connect(url, open_timeout=5) as ws:
            await ws.send(json.dumps({"type": "join", "roomId": chat, "sessionId": "bob-ok"}))
            await recv_until(ws, "joined", 5)
            await asyncio.sleep(12)
            await ws.send("{}")  # still open: a bad message gets its error reply
            assert (await recv_until(ws, "error", 5))["payload"]["code"] == "bad-message"

    results = await asyncio.gather(
        idle(), half_line(), slowloris(), never_joins(False), never_joins(True), joins_in_time()
    )
    for name, (elapsed, data) in zip(("idle", "half line", "slowloris"), results[:3], strict=True):
        assert 9.5 <= elapsed <= 11.0, f"{name}: cut after {elapsed:.2f} s"
        assert data.startswith(b"HTTP/1.1 408 "), f"{name}: {data[:60]!r}"
    for elapsed, code, close_code in results[3:5]:
        assert (code, close_code) == ("join-timeout", 1008)
        assert 9.5 <= elapsed <= 11.0, f"join deadline after {elapsed:.2f} s"
    await fds_back_to(server, baseline)


async def test_an_attack_from_one_address_leaves_room_for_everyone_else(
    zvonok_server_factory: ServerFactory,
) -> None:
    """With ``max_connections_per_ip=100``, 500 idle TCP connections from 127.0.0.1: 100 are
    held, 400 get ``503`` at once (and so does the next one from 127.0.0.1), the server holds
    at most 100 extra descriptors, and a client from 127.0.0.2 still joins a call and gets its
    offer. When the attacker closes, the descriptors are back to the baseline and 127.0.0.1 is
    served again."""
    server = zvonok_server_factory.start(
        env={"ZVONOK_MAX_CONNECTIONS_PER_IP": "100", "ZVONOK_HEADER_TIMEOUT": "60"}
    )
    chat = await asyncio.to_thread(server.create_chat, ["alice", "bob"])
    await call_and_offer(server, chat, "alice", "127.0.0.2")  # warm up: database, media
    baseline = open_fds(server)

    attack = [await tcp(server) for _ in range(500)]
    try:

        async def outcome(reader: Any) -> bytes | None:
            try:
                return bytes(await asyncio.wait_for(reader.read(), 2))
            except TimeoutError:
                return None  # held open

        answers = await asyncio.gather(*(outcome(reader) for reader, _ in attack))
        held = [a for a in answers if a is None]
        refused = [a for a in answers if a is not None]
        assert len(held) == 100, f"{len(held)} held"
        assert all(a.startswith(b"HTTP/1.1 503 ") for a in refused), refused[:1]
        assert open_fds(server) <= baseline + 100 + 5

        reader, writer = await tcp(server)  # the 503 comes before any request is read
        refused_now = await asyncio.wait_for(reader.read(), 2)
        assert refused_now.startswith(b"HTTP/1.1 503 "), refused_now[:60]
        writer.close()

        await call_and_offer(server, chat, "bob", "127.0.0.2")
    finally:
        for _, writer in attack:
            writer.close()
    await fds_back_to(server, baseline)
    await call_and_offer(server, chat, "bob", "127.0.0.1")


async def test_the_total_cap_refuses_every_address_and_upgraded_sockets_give_their_slot_back(
    zvonok_server_factory: ServerFactory,
) -> None:
    """``max_connections=5``: five WebSockets (upgraded from HTTP) from 127.0.0.3 fill the
    server; a sixth connection from anywhere gets ``503``; once they close, five new ones fit."""
    server = zvonok_server_factory.start(env={"ZVONOK_MAX_CONNECTIONS": "5"})
    chat = await asyncio.to_thread(server.create_chat, ["alice", "bob"])
    token = await asyncio.to_thread(server.token, "alice")
    url = server.ws_url("chat", chat) + "?access_token=" + token
    for _round in range(2):
        sockets = [await connect(url, local_addr=("127.0.0.3", 0)) for _ in range(5)]
        try:
            reader, writer = await tcp(server, "127.0.0.4")
            answer = await asyncio.wait_for(reader.read(), 2)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:60]
            writer.close()
        finally:
            for ws in sockets:
                await ws.close()
        await asyncio.sleep(0.5)
    await call_and_offer(server, chat, "bob", "127.0.0.4")


@pytest.mark.slow
async def test_silent_client_is_ended_60_seconds_after_its_last_frame(
    silent_client: Future[Ended],
) -> None:
    """Default settings: a client that joins, then neither reads, answers pings nor sends media,
    is ended (``participant-left`` ``disconnect`` to its room-mate) 60 ± 2 s after its join.
    (The module's last test: the run started with the module's first, ``silent_client``.)"""
    left, elapsed = await asyncio.wrap_future(silent_client)
    assert left["payload"]["sessionId"] == "alice-1"
    assert left["payload"]["reason"] == "disconnect"
    assert 58.0 <= elapsed <= 62.0, f"ended {elapsed:.1f} s after the last frame, not 60 ± 2 s"
