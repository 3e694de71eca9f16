"""HttpMembershipStore against a real HTTP server on 127.0.0.1 that counts its requests."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from zvonok.auth.tokens import Grants
from zvonok.errors import StoreUnavailable
from zvonok.ids import RoomKey, UserId
from zvonok.store.http import AnswerCache, HttpMembershipStore

#: (kind, roomId) → members, as the messenger's API knows them.
MEMBERS = {("chat", "1"): {"alice", "bob"}, ("group", "7"): {"alice", "carol"}}


@dataclass
class Messenger:
    base: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    auth: list[str | None] = field(default_factory=list)


@pytest.fixture
def messenger() -> Iterator[Messenger]:
    state = Messenger(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.auth.append(self.headers.get("Authorization"))
            if self.path == "/slow":
                time.sleep(1.0)
            status, answer = self._answer(body)
            data = answer.encode()
            try:
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "https://sso.example/login?next=/members&sid=42")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (the timeout test)

        def _answer(self, body: dict[str, Any]) -> tuple[int, str]:
            if self.path.startswith("/status/"):
                return int(self.path.rsplit("/", 1)[1]), "{}"
            if self.path.startswith(
                "/echo-500"
            ):  # an error page that repeats the request, ids and all
                return 500, f"<h1>boom</h1>\n<pre>{json.dumps(body)}\n{'x' * 500}</pre>"
            if self.path == "/not-json":
                return 200, "<html>"
            if self.path == "/no-bool":
                return 200, '{"member": "yes"}'
            members = MEMBERS.get((body["kind"], body["roomId"]))
            if members is None:
                return 404, '{"error": "no such room"}'
            return 200, json.dumps({"member": body["userId"] in members})

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    state.base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def grants(user: str) -> Grants:
    return Grants(UserId(user), time.time() + 60, None, None)


async def test_members_and_non_members(messenger: Messenger) -> None:
    store = HttpMembershipStore(f"{messenger.base}/members", token="api-key", cache_ttl=0)
    try:
        assert await store.is_member(grants("alice"), RoomKey.parse("chat:1"))
        assert not await store.is_member(grants("carol"), RoomKey.parse("chat:1"))
        assert await store.is_member(grants("carol"), RoomKey.parse("group:7"))
        assert not await store.is_member(grants("alice"), RoomKey.parse("group:404"))
    finally:
        await store.close()
    assert messenger.requests[0] == {"kind": "chat", "roomId": "1", "userId": "alice"}
    assert messenger.auth == ["Bearer api-key"] * 4


async def test_answers_are_cached(messenger: Messenger) -> None:
    store = HttpMembershipStore(f"{messenger.base}/members", cache_ttl=0.3)
    try:
        for _ in range(3):
            assert await store.is_member(grants("alice"), RoomKey.parse("chat:1"))
            assert not await store.is_member(grants("dave"), RoomKey.parse("chat:1"))
        assert len(messenger.requests) == 2
        assert messenger.auth == [None, None]
        await asyncio.sleep(0.4)
        assert await store.is_member(grants("alice"), RoomKey.parse("chat:1"))
        assert len(messenger.requests) == 3
    finally:
        await store.close()


async def test_timeout_is_unavailable(messenger: Messenger) -> None:
    store = HttpMembershipStore(f"{messenger.base}/slow", timeout=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="membership callback failed"):
            await store.is_member(grants("alice"), RoomKey.parse("chat:1"))
        assert time.monotonic() - started < 0.9
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/status/500", "answered HTTP 500"),
        ("/status/401", "answered HTTP 401"),
        ("/status/302", "answered HTTP 302"),
        ("/not-json", "without a boolean 'member'"),
        ("/no-bool", "without a boolean 'member'"),
    ],
)
async def test_bad_answers_are_unavailable(messenger: Messenger, path: str, message: str) -> None:
    store = HttpMembershipStore(f"{messenger.base}{path}")
    try:
        with pytest.raises(StoreUnavailable, match=message):
            await store.is_member(grants("alice"), RoomKey.parse("chat:1"))
        assert len(store.cache) == 0  # failures are never cached
    finally:
        await store.close()


async def test_forbidden_means_not_a_member(messenger: Messenger) -> None:
    store = HttpMembershipStore(f"{messenger.base}/status/403")
    try:
        assert not await store.is_member(grants("alice"), RoomKey.parse("chat:1"))
    finally:
        await store.close()


async def test_server_down_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = HttpMembershipStore(f"http://127.0.0.1:{port}/members", timeout=1.0)
    try:
        with pytest.raises(StoreUnavailable, match="membership callback failed"):
            await store.is_member(grants("alice"), RoomKey.parse("chat:1"))
    finally:
        await store.close()


async def test_failures_are_logged_for_the_operator(
    messenger: Messenger, caplog: pytest.LogCaptureFixture
) -> None:
    """Status, reason and a short body excerpt; the URL without credentials; never the ids."""
    caplog.set_level(logging.WARNING, "zvonok.store.http")
    base = messenger.base.replace("http://", "http://api:key@")
    for path in ("/echo-500?sig=abc", "/status/302", "/not-json", "/slow"):
        store = HttpMembershipStore(f"{base}{path}", timeout=0.3)
        try:
            with pytest.raises(StoreUnavailable):
                await store.is_member(
                    grants("user-secret-42"), RoomKey.parse("group:room-secret-7")
                )
        finally:
            await store.close()
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 4
    echo, redirect, not_json, slow = lines
    assert echo.startswith(
        f"membership callback failed: POST {messenger.base}/echo-500 answered HTTP 500 Internal "
        'Server Error; body: <h1>boom</h1> <pre>{"kind": "group", "roomId": "<room_id>", '
        '"userId": "<user_id>"} xxx'
    )
    assert echo.endswith("x…") and len(echo) < 300
    assert redirect == (
        f"membership callback failed: POST {messenger.base}/status/302 answered HTTP 302 Found "
        "(a redirect to https://sso.example/login; redirects are not followed); body: {}"
    )
    assert not_json.endswith("answered without a boolean 'member'; body: <html>")
    assert re.search(r"/slow timed out after 0\.3 s \((ReadTimeout|no complete answer)\)$", slow)
    assert "secret" not in caplog.text and "key@" not in caplog.text and "sig=" not in caplog.text


async def test_connection_errors_are_named(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    caplog.set_level(logging.WARNING, "zvonok.store.http")
    store = HttpMembershipStore(f"http://127.0.0.1:{port}/members", timeout=1.0)
    try:
        with pytest.raises(StoreUnavailable, match="could not connect"):
            await store.is_member(grants("alice"), RoomKey.parse("chat:1"))
    finally:
        await store.close()
    (line,) = [record.getMessage() for record in caplog.records]
    assert line.startswith(
        f"membership callback failed: POST http://127.0.0.1:{port}/members could not connect "
        "(ConnectError: "
    )
    assert "Connection refused" in line or "connection attempts failed" in line


def test_cache_is_a_bounded_lru() -> None:
    cache = AnswerCache(ttl=60, size=2)
    cache.put(("chat", "1", "a"), True)
    cache.put(("chat", "1", "b"), False)
    assert cache.get(("chat", "1", "a")) is True  # now the most recently used
    cache.put(("chat", "1", "c"), True)
    assert len(cache) == 2
    assert cache.get(("chat", "1", "b")) is None
    assert cache.get(("chat", "1", "a")) is True
    assert cache.get(("chat", "1", "c")) is True
    disabled = AnswerCache(ttl=0)
    disabled.put(("chat", "1", "a"), True)
    assert disabled.get(("chat", "1", "a")) is None
