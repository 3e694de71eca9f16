"""The HTTP edge against a real ``zvonok serve``: development endpoints, forwarded-for headers,
frame sizes in bytes, untrusted text in logs, and the admin API's OpenAPI pages.

Every test talks to the server over real sockets on loopback. A server bound to a non-loopback
address runs inside a fresh network namespace (``unshare -n``; loopback plus 198.18.0.1, RFC 2544
benchmarking space) so that nothing listens on this machine's real interfaces: the outer test
re-runs one inner test of this module there.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from .harness.messages import recv_until
from .harness.server import ServerFactory, ZvonokServer

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).parents[2]
IN_NAMESPACE = os.environ.get("ZVONOK_TEST_EDGE_NAMESPACE") == "1"
NAMESPACE_ADDRESS = "198.18.0.1"


def _log_text(server: ZvonokServer) -> str:
    return "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in server.logs())


# --------------------------------------------------------------- development endpoints


def test_dev_endpoints_refuse_foreign_host_origin_and_plain_text(
    zvonok_server: ZvonokServer,
) -> None:
    """CSRF and DNS rebinding against a loopback dev server (the default setup)."""
    base = zvonok_server.http_url
    port = zvonok_server.port
    body = {"userId": "eve"}
    with httpx.Client(base_url=base, timeout=5) as http:
        # What the demo page sends, from either loopback name: accepted.
        for name in ("127.0.0.1", "localhost"):
            headers = {"Host": f"{name}:{port}", "Origin": f"http://{name}:{port}"}
            ok = http.post("/dev/token", json=body, headers=headers)
            assert ok.status_code == 200 and ok.json()["token"], ok.text
        assert http.get("/debug/state").status_code == 200
        # A page on a rebinding name reaches 127.0.0.1 with its own name as Host.
        rebound = {"Host": f"attacker.example:{port}", "Origin": f"http://attacker.example:{port}"}
        assert http.post("/dev/token", json=body, headers=rebound).status_code == 403
        assert http.post("/dev/join", json=body, headers=rebound).status_code == 403
        assert http.get("/debug/state", headers=rebound).status_code == 403
        # A cross-site page posts to http://127.0.0.1:port directly (Host is right, Origin not).
        cross = {"Origin": "https://attacker.example"}
        response = http.post("/dev/token", json=body, headers=cross)
        assert response.status_code == 403
        assert response.json() == {"error": "forbidden", "message": "cross-site Origin"}
        join = {"userId": "eve", "kind": "chat", "roomId": "77"}
        assert http.post("/dev/join", json=join, headers=cross).status_code == 403
        # A CORS-simple request (no preflight): text/plain or a form.
        for content_type in ("text/plain", "application/x-www-form-urlencoded"):
            headers = {"Content-Type": content_type}
            plain = http.post("/dev/join", content=json.dumps(join), headers=headers)
            assert plain.status_code == 415, plain.text


def test_dev_join_refusals_leave_no_membership(zvonok_server: ZvonokServer) -> None:
    """A refused /dev/join changes nothing: eve still cannot open chat 77's call socket."""
    base = zvonok_server.http_url
    join = {"userId": "eve", "kind": "chat", "roomId": "77"}
    with httpx.Client(base_url=base, timeout=5) as http:
        assert http.post("/dev/join", json=join, headers={"Origin": "null"}).status_code == 403
        assert (
            http.post("/dev/join", content=json.dumps(join), headers={"Content-Type": "text/plain"})
        ).status_code == 415
    token = zvonok_server.token("eve")

    async def status() -> int:
        try:
            async with connect(
                zvonok_server.ws_url("chat", "77"),
                additional_headers={"Authorization": f"Bearer {token}"},
            ):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(status()) == 403
    with httpx.Client(base_url=base, timeout=5) as http:
        assert http.post("/dev/join", json=join).status_code == 200
    assert asyncio.run(status()) == 101


@pytest.mark.timeout(240)
def test_dev_endpoints_on_a_network_bind() -> None:
    """``--host 0.0.0.0``: no dev endpoints unless ``dev_mode = true`` (then a loud warning)."""
    unshare = shutil.which("unshare")
    ip = shutil.which("ip")
    assert unshare and ip, "unshare and ip (util-linux, iproute2) are needed for this test"
    flags = ["-n"] if os.geteuid() == 0 else ["-Urn"]
    inner = (
        f"{ip} link set lo up && {ip} addr add {NAMESPACE_ADDRESS}/32 dev lo && "
        f"{sys.executable} -m pytest -q -p no:cacheprovider "
        "tests/integration/test_edge_http.py::test_network_bind_inside_a_namespace"
    )
    result = subprocess.run(
        [unshare, *flags, "sh", "-c", inner],
        cwd=ROOT,
        env={**os.environ, "ZVONOK_TEST_EDGE_NAMESPACE": "1"},
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "1 passed" in output, output[-4000:]


@pytest.mark.skipif(not IN_NAMESPACE, reason="run by test_dev_endpoints_on_a_network_bind")
def test_network_bind_inside_a_namespace(zvonok_server_factory: ServerFactory) -> None:
    bind = ["--host", "0.0.0.0", "--announce-ip", NAMESPACE_ADDRESS]
    auto = zvonok_server_factory.start(extra_args=bind)
    body = {"userId": "eve"}
    for host in ("127.0.0.1", NAMESPACE_ADDRESS):
        base = f"http://{host}:{auto.port}"
        with httpx.Client(base_url=base, timeout=5) as http:
            assert http.get("/demo/config").json() == {"mode": "prod"}
            assert http.post("/dev/token", json=body).status_code == 404
            assert http.post("/dev/join", json=body).status_code == 404
            assert http.get("/debug/state").status_code == 404
    assert "development mode" not in _log_text(auto).lower()

    explicit = zvonok_server_factory.start(extra_args=bind, env={"ZVONOK_DEV_MODE": "true"})
    warnings = [
        entry
        for entry in explicit.logs()
        if isinstance(entry, dict)
        and entry.get("level") == "WARNING"
        and "DEVELOPMENT MODE ON A NETWORK ADDRESS" in str(entry.get("msg"))
    ]
    assert len(warnings) == 1, _log_text(explicit)[-3000:]
    assert NAMESPACE_ADDRESS in str(warnings[0]["msg"])
    # With dev_mode = true the bind and announced addresses count as local Host names too.
    lan = f"http://{NAMESPACE_ADDRESS}:{explicit.port}"
    with httpx.Client(base_url=lan, timeout=5) as http:
        response = http.post("/dev/token", json=body, headers={"Origin": lan})
        assert response.status_code == 200, response.text
        assert http.get("/debug/state").status_code == 200
        other = {"Host": f"198.18.0.2:{explicit.port}"}
        assert http.post("/dev/token", json=body, headers=other).status_code == 403
        cross = {"Origin": "http://attacker.example"}
        assert http.post("/dev/token", json=body, headers=cross).status_code == 403
        plain = {"Content-Type": "text/plain"}
        assert (
            http.post("/dev/token", content=b'{"userId":"eve"}', headers=plain).status_code == 415
        )


# --------------------------------------------------------------- X-Forwarded-For


async def _attempt(server: ZvonokServer, forwarded_for: str) -> int:
    """One WebSocket upgrade without a token; the HTTP status it got (401, or 429 when limited)."""
    headers = {"X-Forwarded-For": forwarded_for}
    try:
        async with connect(server.ws_url("chat", "1"), additional_headers=headers):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def _random_ip() -> str:
    return (
        "203.0.113."
        + str(secrets.randbelow(254) + 1)
        + ", 198.51.100."
        + str(secrets.randbelow(254) + 1)
    )


LIMIT = {"ZVONOK_CONNECT_BURST": "5", "ZVONOK_CONNECT_RATE": "0.01"}


def test_forwarded_for_is_ignored_by_default(zvonok_server_factory: ServerFactory) -> None:
    """From 127.0.0.1, a fresh random ``X-Forwarded-For`` per attempt does not reset the limit."""
    server = zvonok_server_factory.start(env=LIMIT)

    async def run() -> list[int]:
        return [await _attempt(server, _random_ip()) for _ in range(9)]

    assert asyncio.run(run()) == [401] * 5 + [429] * 4
    refusals = [e for e in server.logs() if "connection rate from" in json.dumps(e)]
    assert refusals and all("127.0.0.1" in json.dumps(e) for e in refusals)
    assert "203.0.113." not in _log_text(server)


def test_forwarded_for_counts_from_a_configured_proxy(zvonok_server_factory: ServerFactory) -> None:
    """With 127.0.0.1 a trusted proxy, its right-most ``X-Forwarded-For`` entry is the client."""
    env = {**LIMIT, "ZVONOK_FORWARDED_ALLOW_IPS": '["127.0.0.1"]'}
    server = zvonok_server_factory.start(env=env)

    async def run() -> tuple[list[int], list[int]]:
        varied = [await _attempt(server, f"10.9.9.{n}") for n in range(1, 10)]
        # The client-supplied left entry changes; the proxy-appended right one does not.
        same = [await _attempt(server, f"6.6.6.{n}, 203.0.113.77") for n in range(1, 10)]
        return varied, same

    varied, same = asyncio.run(run())
    assert varied == [401] * 9
    assert same == [401] * 5 + [429] * 4
    assert any("connection rate from 203.0.113.77" in json.dumps(e) for e in server.logs())


# --------------------------------------------------------------- frame size in bytes


async def _member_socket(server: ZvonokServer) -> tuple[str, str]:
    chat = await asyncio.to_thread(server.create_chat, ["alice", "bob"])
    token = await asyncio.to_thread(server.token, "alice")
    return chat, token


def test_message_limit_counts_utf8_bytes(zvonok_server: ZvonokServer) -> None:
    """``max_message_bytes`` (default 256 KiB) counts bytes: a ~1 MB frame of emoji is too large."""

    async def run() -> list[str]:
        chat, token = await _member_socket(zvonok_server)
        codes = []
        headers = {"Authorization": f"Bearer {token}"}
        async with connect(
            zvonok_server.ws_url("chat", chat), additional_headers=headers, max_size=None
        ) as ws:
            # 240,000 characters (< 262,144) but 960,000 bytes; 65,536 emoji = exactly 256 KiB.
            for count in (240_000, 65_537, 65_536, 1000):
                await ws.send("\U0001f600" * count)
                error = await recv_until(ws, "error")
                codes.append(error["payload"]["code"])
        return codes

    assert asyncio.run(run()) == ["too-large", "too-large", "bad-json", "bad-json"]


# --------------------------------------------------------------- untrusted text in logs


@pytest.mark.timeout(60)
def test_attacker_text_never_reaches_the_log(zvonok_server: ZvonokServer) -> None:
    """A malformed ``a=ice-pwd``, a bad candidate and an unknown type that carry a marker: the
    client is told why (its own text comes back), the INFO log says only the error code."""
    marker = "zvmark-" + secrets.token_hex(6)
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        f"a=ice-ufrag:abcd\r\na=ice-pwd:{marker}!\r\n"
    )

    async def run() -> list[dict[str, Any]]:
        chat, token = await _member_socket(zvonok_server)
        headers = {"Authorization": f"Bearer {token}"}
        errors = []
        async with connect(zvonok_server.ws_url("chat", chat), additional_headers=headers) as ws:

            async def send(msg_type: str, payload: Any = None) -> None:
                envelope = {"type": msg_type, "roomId": chat, "sessionId": "s-alice"}
                if payload is not None:
                    envelope["payload"] = payload
                await ws.send(json.dumps(envelope))

            await send("join")
            await recv_until(ws, "joined")
            await send("offer", {"type": "offer", "sdp": sdp})
            for _ in range(3):  # a server offer may be outstanding: `glare` first, then bad-sdp
                error = await recv_until(ws, "error", 8)
                if error["payload"]["code"] == "bad-sdp":
                    break
            errors.append(error)
            candidate = f"candidate:{marker} 1 udp\r\nFORGED {marker} log line"
            await send("ice", {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0})
            errors.append(await recv_until(ws, "error"))
            await send(f"x-{marker}")
            errors.append(await recv_until(ws, "error"))
        return errors

    errors = asyncio.run(run())
    assert [e["payload"]["code"] for e in errors] == ["bad-sdp", "bad-candidate", "bad-message"]
    for error in errors:
        assert marker in error["payload"]["message"], error  # the marker did reach the parsers
    text = _log_text(zvonok_server)
    assert marker not in text, [line for line in text.splitlines() if marker in line]
    # ... and the refusals were logged, by code.
    assert "bad-sdp" in text, text[-3000:]
    assert "refused ice (bad-candidate)" in text, text[-3000:]
    assert "bad message (bad-message)" in text, text[-3000:]


# --------------------------------------------------------------- admin OpenAPI pages


def test_admin_openapi_and_docs_need_the_token(zvonok_server_factory: ServerFactory) -> None:
    admin_token = secrets.token_urlsafe(32)
    server = zvonok_server_factory.start(env={"ZVONOK_ADMIN_TOKEN": admin_token})
    paths = ("/docs", "/openapi.json", "/admin/docs", "/admin/openapi.json", "/admin/rooms")
    with httpx.Client(base_url=server.http_url, timeout=5) as http:
        for path in paths:
            assert http.get(path).status_code == 401, path
            wrong = {"Authorization": "Bearer " + secrets.token_urlsafe(32)}
            assert http.get(path, headers=wrong).status_code == 401, path
            assert http.get(path, headers={"Authorization": admin_token}).status_code == 401, path
            right = {"Authorization": f"Bearer {admin_token}"}
            response = http.get(path, headers=right)
            assert response.status_code == 200, path
        spec = http.get("/openapi.json", headers=right).json()
        assert "/admin/rooms" in spec["paths"]
        assert "swagger" in http.get("/docs", headers=right).text.lower()
