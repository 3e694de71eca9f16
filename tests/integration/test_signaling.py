"""The signaling protocol against a real ``zvonok serve`` process, with a real WebSocket client.

Covers the auth matrix (refusals before the WebSocket is accepted), room isolation, the envelope
rules, bad input surviving, session ownership, leave/drop notifications, and 200 concurrent
joins/leaves leaving nothing behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .harness.server import ServerFactory, ZvonokServer

pytestmark = pytest.mark.timeout(120)


class Client:
    """A protocol client over one WebSocket: send envelopes, wait for message types."""

    def __init__(self, ws: ClientConnection, room_id: int | str, session_id: str) -> None:
        self.ws = ws
        self.room_id = room_id
        self.session_id = session_id
        self.seen: list[dict[str, Any]] = []

    async def send(self, msg_type: str, payload: Any = None, **fields: Any) -> None:
        envelope = {"type": msg_type, "roomId": self.room_id, "sessionId": self.session_id}
        if payload is not None:
            envelope["payload"] = payload
        envelope.update(fields)
        await self.ws.send(json.dumps(envelope))

    async def expect(self, msg_type: str, wait: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {msg_type!r}; saw {[m['type'] for m in self.seen]}")
            raw = await asyncio.wait_for(self.ws.recv(), left)
            msg: dict[str, Any] = json.loads(raw)
            self.seen.append(msg)
            if msg["type"] == msg_type:
                return msg

    async def join(self) -> dict[str, Any]:
        await self.send("join")
        return await self.expect("joined")


@asynccontextmanager
async def client(
    server: ZvonokServer,
    user: str,
    room: str,
    *,
    kind: str = "chat",
    session: str | None = None,
    room_id: int | str | None = None,
    header: bool = True,
) -> AsyncIterator[Client]:
    token = server.token(user)
    url = server.ws_url(kind, room)
    headers = {"Authorization": f"Bearer {token}"} if header else {}
    if not header:
        url += f"?access_token={token}"
    async with connect(url, additional_headers=headers, max_size=2**24) as ws:
        yield Client(ws, room_id if room_id is not None else room, session or f"{user}-{room}")


async def refused_status(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, additional_headers=headers or {}):
            pass
    return info.value.response.status_code, bytes(info.value.response.body or b"")


def secret_of(server: ZvonokServer) -> str:
    return (server.data_dir / "jwt-secret").read_text().strip()


def hs_token(secret: str, **claims: Any) -> str:
    body = {"sub": "alice", "exp": int(time.time()) + 600, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, secret, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_auth_matrix(zvonok_server: ZvonokServer) -> None:
    server = zvonok_server
    chat = server.create_chat(["alice", "bob"])
    server.create_group(["carol"], room_id=chat)  # same id, other kind
    url = server.ws_url("chat", chat)
    secret = secret_of(server)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    none_header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    none_claims = b64(json.dumps({"sub": "alice", "exp": int(time.time()) + 600}).encode())
    none_token = f"{none_header}.{none_claims}."
    expired = hs_token(secret, exp=int(time.time()) - 3600)
    rs_claims = {"sub": "alice", "exp": int(time.time()) + 600}
    rs_token = jwt.encode(rs_claims, rsa_key, algorithm="RS256")
    cases: dict[str, tuple[dict[str, str], str, int]] = {
        "missing": ({}, "", 401),
        "malformed": ({"Authorization": "Bearer not-a-jwt"}, "", 401),
        "expired": ({"Authorization": "Bearer " + expired}, "", 401),
        "wrong signature": ({"Authorization": "Bearer " + hs_token("x" * 40)}, "", 401),
        "alg none": ({"Authorization": "Bearer " + none_token}, "", 401),
        "rs256 on hs server": (
            {"Authorization": "Bearer " + rs_token},
            "",
            401,
        ),
        "no exp": ({"Authorization": "Bearer " + hs_token(secret, exp=None)}, "", 401),
        "non-member": ({"Authorization": "Bearer " + server.token("mallory")}, "", 403),
        "member of the other kind": ({"Authorization": "Bearer " + server.token("carol")}, "", 403),
        "query token non-member": ({}, "?access_token=" + server.token("mallory"), 403),
        "header wins over query": (
            {"Authorization": "Bearer not-a-jwt"},
            "?access_token=" + server.token("alice"),
            401,
        ),
    }  # fmt: skip
    bodies = {}
    for name, (headers, query, status) in cases.items():
        got, body = await refused_status(url + query, headers)
        assert got == status, name
        bodies[name] = body
    # A chat that does not exist answers exactly like one you are not in.
    got, body = await refused_status(
        server.ws_url("chat", "999999"), {"Authorization": "Bearer " + server.token("mallory")}
    )
    assert (got, body) == (403, bodies["non-member"])
    # Header and query both work for a member.
    async with client(server, "alice", chat, header=True) as c:
        assert (await c.join())["payload"]["userId"] == "alice"
    async with client(server, "bob", chat, header=False) as c:
        assert (await c.join())["payload"]["userId"] == "bob"


async def test_hs_rs_confusion_refused(
    zvonok_server_factory: ServerFactory, tmp_path: Path
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    server = zvonok_server_factory.start(
        env={"ZVONOK_JWT_ALGORITHMS": '["RS256"]', "ZVONOK_JWT_PUBLIC_KEY": pem.decode()}
    )
    chat = server.create_chat(["alice", "bob"])
    url = server.ws_url("chat", chat)
    claims = {"sub": "alice", "exp": int(time.time()) + 600}
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    import hashlib
    import hmac

    signature = hmac.new(pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{b64(signature)}"
    assert (await refused_status(url, {"Authorization": f"Bearer {forged}"}))[0] == 401
    good = jwt.encode(claims, key, algorithm="RS256")
    async with connect(url, additional_headers={"Authorization": f"Bearer {good}"}) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": chat, "sessionId": "a1"}))
        assert json.loads(await ws.recv())["type"] == "joined"


async def test_rooms_isolated_by_kind_and_id(zvonok_server: ZvonokServer) -> None:
    server = zvonok_server
    chat = server.create_chat(["alice", "bob"])
    group = server.create_group(["alice", "bob"], room_id=chat)
    async with (
        client(server, "alice", chat, kind="chat") as a,
        client(server, "bob", group, kind="group", session="bob-g") as b,
    ):
        await a.join()
        joined = await b.join()
        assert joined["payload"]["participants"] == []
        assert joined["payload"]["room"] == f"group:{group}"
        async with client(server, "bob", chat, kind="chat") as b2:
            joined = await b2.join()
            assert [p["userId"] for p in joined["payload"]["participants"]] == ["alice"]
            assert (await a.expect("participant-joined"))["payload"]["sessionId"] == b2.session_id
        assert "participant-joined" not in [m["type"] for m in b.seen]


async def test_envelope_rules_and_bad_input(zvonok_server: ZvonokServer) -> None:
    server = zvonok_server
    chat = server.create_chat(["alice", "bob"])
    async with client(server, "alice", chat, room_id=int(chat)) as c:
        await c.send("offer", {"type": "offer", "sdp": "v=0"})
        assert (await c.expect("error"))["payload"]["code"] == "not-joined"
        await c.send("join", roomId=int(chat) + 1)
        assert (await c.expect("error"))["payload"]["code"] == "room-mismatch"
        joined = await c.join()
        assert joined["roomId"] == int(chat) and joined["sessionId"] == c.session_id
        await c.ws.send("{this is not json")
        assert (await c.expect("error"))["payload"]["code"] == "bad-json"
        await c.send("dance")
        error = await c.expect("error")
        assert error["payload"]["code"] == "bad-message" and error["payload"]["ref"] == "dance"
        await c.send("offer")
        assert (await c.expect("error"))["payload"]["code"] == "bad-message"
        await c.send("ice", {"candidate": "candidate:garbage"})
        assert (await c.expect("error"))["payload"]["code"] == "bad-candidate"
        await c.send("offer", {"type": "offer", "sdp": "garbage"})
        assert (await c.expect("error"))["payload"]["code"] in ("bad-sdp", "glare")
        await c.ws.send(json.dumps({"type": "ice", "roomId": int(chat), "sessionId": "other"}))
        assert (await c.expect("error"))["payload"]["code"] == "session-mismatch"
        await c.ws.send("x" * (300 * 1024))
        assert (await c.expect("error"))["payload"]["code"] == "too-large"
        await c.send("join")
        assert (await c.expect("error"))["payload"]["code"] == "already-joined"
        # Payload as a JSON string is accepted: a well-formed end-of-candidates.
        await c.send("ice", json.dumps({"candidate": "", "sdpMid": "0"}))
        await c.send("leave")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await c.ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


async def test_flood_of_bad_messages_closes_only_that_connection(
    zvonok_server: ZvonokServer,
) -> None:
    server = zvonok_server
    chat = server.create_chat(["alice", "bob"])
    async with client(server, "alice", chat) as good, client(server, "bob", chat) as bad:
        await good.join()
        await bad.join()
        for _ in range(40):
            try:
                await bad.ws.send("nope")
            except ConnectionClosed:
                break
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await bad.ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        await good.send("ice", {"candidate": "", "sdpMid": "0"})
        await good.send("dance")
        assert (await good.expect("error"))["payload"]["code"] == "bad-message"


async def test_session_bound_to_its_user(zvonok_server_factory: ServerFactory) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_RESUME_GRACE": "5"})
    group = server.create_group(["alice", "bob"])
    async with client(server, "alice", group, kind="group", session="shared") as a:
        await a.join()
        async with client(server, "bob", group, kind="group", session="shared") as b:
            await b.send("join")
            assert (await b.expect("error"))["payload"]["code"] == "session-taken"
            await b.send("leave")
            assert (await b.expect("error"))["payload"]["code"] == "not-joined"
            b.session_id = "bob-own"
            await b.join()
            assert (await a.expect("participant-joined"))["payload"]["userId"] == "bob"
            # alice drops her socket; bob sees no leave; alice resumes the same session.
            await a.ws.close()
            async with client(server, "alice", group, kind="group", session="shared") as a2:
                joined = await a2.join()
                assert joined["payload"]["resumed"] is True
                await asyncio.sleep(0.5)
                assert "participant-left" not in [m["type"] for m in b.seen]
                await a2.send("leave")
                left = await b.expect("participant-left")
                assert left["payload"] == {
                    "sessionId": "shared",
                    "userId": "alice",
                    "reason": "leave",
                }


async def test_dropped_socket_ends_session_after_grace(
    zvonok_server_factory: ServerFactory,
) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_RESUME_GRACE": "1"})
    chat = server.create_chat(["alice", "bob"])
    async with client(server, "bob", chat) as b:
        await b.join()
        async with client(server, "alice", chat) as a:
            await a.join()
            await b.expect("participant-joined")
        left = await b.expect("participant-left", wait=5)
        assert left["payload"]["reason"] == "disconnect"


async def state_of(server: ZvonokServer) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(server.http_url + "/debug/state")).json()  # type: ignore[no-any-return]


async def test_200_concurrent_joins_and_leaves_leave_nothing(
    zvonok_server_factory: ServerFactory,
) -> None:
    server = zvonok_server_factory.start(
        env={
            "ZVONOK_RESUME_GRACE": "2",
            "ZVONOK_CONNECT_BURST": "1000",
            # Ten sessions per user per group at once: the per-user cap is not the point here.
            "ZVONOK_MAX_SESSIONS_PER_USER": "0",
        }
    )
    groups = [server.create_group([f"u{i}" for i in range(10)]) for _ in range(4)]
    tokens = {f"u{i}": server.token(f"u{i}") for i in range(10)}
    baseline = await state_of(server)

    async def one(n: int) -> None:
        user = f"u{n % 10}"
        group = groups[n % len(groups)]
        url = server.ws_url("group", group) + f"?access_token={tokens[user]}"
        # close_timeout: under a burst, some closing handshakes are not answered by the server for
        # 10 s (an open issue of its own); this test is about what is left behind.
        async with connect(url, close_timeout=1) as ws:
            c = Client(ws, group, f"s{n}")
            await c.join()
            if n % 3:
                await c.send("leave")
            # n % 3 == 0: drop the socket without leaving (grace window of the server)

    await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(200))), timeout=60)
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        state = await state_of(server)
        if not state["rooms"] and state["sessions"] == 0 and state["transports"] == 0:
            break
        await asyncio.sleep(0.5)
    assert state["rooms"] == {} and state["sessions"] == 0 and state["transports"] == 0
    assert state["connections"] == 0
    assert state["tasks"] <= baseline["tasks"] + 2


async def test_http_membership_backend_and_its_outage(
    zvonok_server_factory: ServerFactory,
) -> None:
    """The messenger's membership callback decides; when it is down, joins get 503, never 101."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls: list[dict[str, Any]] = []

    class Membership(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            calls.append(body)
            member = body["userId"] in ("alice", "bob") and body["kind"] == "group"
            data = json.dumps({"member": member}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            return None

    http = ThreadingHTTPServer(("127.0.0.1", 0), Membership)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    port = http.server_address[1]
    try:
        server = zvonok_server_factory.start(
            env={
                "ZVONOK_MEMBERSHIP_BACKEND": "http",
                "ZVONOK_MEMBERSHIP_HTTP_URL": f"http://127.0.0.1:{port}/membership",
                "ZVONOK_MEMBERSHIP_HTTP_CACHE_TTL": "0.1",
            }
        )
        async with client(server, "alice", "42", kind="group") as c:
            assert (await c.join())["payload"]["room"] == "group:42"
        headers = {"Authorization": "Bearer " + server.token("mallory")}
        assert (await refused_status(server.ws_url("group", "42"), headers))[0] == 403
        headers = {"Authorization": "Bearer " + server.token("alice")}
        assert (await refused_status(server.ws_url("chat", "42"), headers))[0] == 403
        assert {"kind": "group", "roomId": "42", "userId": "alice"} in calls
    finally:
        http.shutdown()
        http.server_close()
    await asyncio.sleep(0.3)  # past the cache TTL: the next answer must come from the callback
    started = time.monotonic()
    assert (await refused_status(server.ws_url("group", "42"), headers))[0] == 503
    assert time.monotonic() - started < 5


async def test_connection_rate_per_ip(zvonok_server_factory: ServerFactory) -> None:
    server = zvonok_server_factory.start(
        env={"ZVONOK_CONNECT_RATE": "0.5", "ZVONOK_CONNECT_BURST": "3"}
    )
    chat = server.create_chat(["alice", "bob"])
    headers = {"Authorization": "Bearer " + server.token("mallory")}
    statuses = [(await refused_status(server.ws_url("chat", chat), headers))[0] for _ in range(5)]
    assert statuses == [403, 403, 403, 429, 429]
