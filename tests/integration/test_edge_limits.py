"""The HTTP/WebSocket port under connection exhaustion, and the exact inactivity timeout, against a
real ``zvonok serve`` with real sockets.

``RawWebSocket`` is a WebSocket client on a plain socket that does only what it is told: the
handshake and masked frames, never a pong. Attackers are plain TCP sockets (idle, half a request
line, one header every few seconds) from 127.0.0.1; the real client that must still get into a
call during the attack connects from 127.0.0.2 with the ``websockets`` library. The server's file
descriptors are read from ``/proc/<pid>/fd``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect

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


async def recv_until(ws: Any, msg_type: str, wait: float) -> dict[str, Any]:
    """The next message of ``msg_type`` on a ``websockets`` connection, within ``wait`` s."""
    deadline = time.monotonic() + wait
    seen: list[str] = []
    for _ in range(10_000):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), left))
        except TimeoutError:
            break
        seen.append(msg["type"])
        if msg["type"] == msg_type:
            return msg
    raise AssertionError(f"no {msg_type!r} within {wait} s; saw {seen}")


@pytest.mark.slow
async def test_silent_client_is_ended_60_seconds_after_its_last_frame(
    zvonok_server: ZvonokServer,
) -> None:
    """Default settings: a client that joins, then neither reads, answers pings nor sends media,
    is ended (``participant-left`` ``disconnect`` to its room-mate) 60 ± 2 s after its join."""
    server = zvonok_server
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
            last_frame = time.monotonic()
            # From here alice reads nothing and answers no ping; her socket stays open.
            joined = await recv_until(bob, "participant-joined", 10)
            assert joined["payload"]["sessionId"] == "alice-1"
            left = await recv_until(bob, "participant-left", 90)
            elapsed = time.monotonic() - last_frame
        finally:
            alice.close()
    assert left["payload"]["sessionId"] == "alice-1"
    assert left["payload"]["reason"] == "disconnect"
    assert 58.0 <= elapsed <= 62.0, f"ended {elapsed:.1f} s after the last frame, not 60 ± 2 s"


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
