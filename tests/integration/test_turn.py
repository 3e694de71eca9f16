"""TURN with time-limited credentials through a real coturn (Debian's ``turnserver``) on loopback.

A relay-only aiortc client (``iceTransportPolicy=relay``: aioice gathers no host or server-reflexive
candidate, so every packet goes through coturn) uses nothing but the ``iceServers`` of its
``joined``; the call passes only when the server's selected address for that session is coturn's
relay address and the other participant decodes the client's colour and tone (and the client
theirs). Separately, coturn itself must refuse a wrong, an expired and a forged credential (401)
and accept the one zvonok minted: the credential is checked by coturn, not just well-formed.
``zvonok serve`` refuses TURN settings that cannot work, and the secret appears in no log line
(at DEBUG) and no start-up error.

Chromium behind a firewall that lets nothing through to the media port: in its own network
namespace (the ICE-TCP tests' topology, test_ice_tcp.py) nftables drops its UDP to the server and
its TCP to the media port (ICE-TCP); coturn listens on the server's namespace address. The test
page takes the ``iceServers`` of ``joined`` (TURN over TCP, a credential minted for the user), the
call connects through coturn with media both ways, Chromium's selected pair is a relay candidate
allocated over TCP, both drop rules counted packets (the direct paths were tried and refused),
and coturn logged the allocation under the minted username. An expired credential is refused by
that coturn over TCP too (401).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aioice import stun, turn
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
)
from websockets.asyncio.client import connect

from .harness import errors
from .harness.aiortc_media import ColourVideoTrack, Receiver, ToneTrack
from .harness.aiortc_peer import AiortcPeer, AiortcPeers
from .harness.chromium import CHROMIUM, join_params
from .harness.coturn import Coturn
from .harness.report_server import ReportServer
from .harness.server import ServerFactory, ZvonokServer, free_port
from .test_ice_tcp import (
    NFT,
    SERVER_ADDRESS,
    NamespacedChromium,
    ReachedAt,
    client_namespace,
    run,
    run_inner,
)

pytestmark = pytest.mark.timeout(150)

WAIT = 30.0
SECRET = "zvonok-test-turn-secret-0123456789"
TTL = 600


class RelayPeer(AiortcPeer):
    """An aiortc participant that rebuilds its peer connection from ``joined``'s ``iceServers``
    with the relay-only policy (before the server's first offer, which follows ``joined``)."""

    ice_servers: list[dict[str, Any]] | None = None

    def _new_pc(self) -> None:
        if self.ice_servers is None:  # before joined: a placeholder that never negotiates
            super()._new_pc()
            return
        config = RTCConfiguration(
            iceServers=[
                RTCIceServer(
                    urls=s["urls"], username=s.get("username"), credential=s.get("credential")
                )
                for s in self.ice_servers
            ],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY,
            bundlePolicy=RTCBundlePolicy.MAX_BUNDLE,
        )
        self.pc = RTCPeerConnection(config)
        self.receiver = Receiver(self.pc, self.track_map, self.participants)
        self.candidates_sent = False
        self.pc.addTrack(ToneTrack(self.color))
        self.pc.addTrack(ColourVideoTrack(self.color))

    async def _handle(self, m: dict[str, Any]) -> None:
        if m.get("type") == "joined" and self.ice_servers is None:
            self.ice_servers = list((m.get("payload") or {}).get("iceServers", []))
            self._old_receivers.append(self.receiver)
            await self.pc.close()
            self._new_pc()
        await super()._handle(m)


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    server = Coturn(tmp_path / "coturn", SECRET)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def start_zvonok(
    factory: ServerFactory, coturn: Coturn, transport: str, **env: str
) -> ZvonokServer:
    return factory.start(
        env={
            "ZVONOK_TURN_URLS": json.dumps([coturn.url(transport)]),
            "ZVONOK_TURN_SECRET": SECRET,
            "ZVONOK_TURN_TTL": str(TTL),
            **env,
        }
    )


def assert_secret_not_logged(server: ZvonokServer) -> None:
    lines = [json.dumps(line) if isinstance(line, dict) else line for line in server.logs()]
    assert lines and not [line for line in lines if SECRET in line]


def relay_candidates(sdp: str) -> list[tuple[str, int]]:
    """``(ip, port)`` of every ``typ relay`` candidate; fails on any other candidate type."""
    out: list[tuple[str, int]] = []
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            assert parts[7] == "relay", f"a non-relay candidate was offered: {line}"
            out.append((parts[4], int(parts[5])))
    return out


async def session_state(server: ZvonokServer, session_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        state = (await http.get(server.http_url + "/debug/state")).json()
    for room in state["rooms"].values():
        for participant in room["participants"]:
            if participant["sessionId"] == session_id:
                return dict(participant)
    raise AssertionError(f"session {session_id} not in /debug/state: {state}")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_relay_only_client_calls_through_coturn_with_credentials_from_joined(
    transport: str,
    coturn: Coturn,
    zvonok_server_factory: ServerFactory,
    aiortc_peers: AiortcPeers,
) -> None:
    server = start_zvonok(zvonok_server_factory, coturn, transport)
    chat = server.create_chat(["alice", "bob"])
    token = await asyncio.to_thread(server.token, "alice")
    alice = RelayPeer(
        "relay(alice)", url=server.ws_url("chat", chat), token=token, room=chat,
        session_id="relay-alice", user="alice", color="red", audio=True, video=True,
        mode="answer",
    )  # fmt: skip
    aiortc_peers.peers.append(alice)
    started = int(time.time())
    await alice.start()
    bob = await aiortc_peers.open(server, user="bob", room=chat, color="blue")

    await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    await alice.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    await bob.wait_receiving(from_user="alice", kind="audio", color="red", timeout=WAIT)
    await alice.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)

    # joined handed exactly one TURN entry, minted for alice, expiring TTL from now
    assert alice.ice_servers is not None and len(alice.ice_servers) == 1
    entry = alice.ice_servers[0]
    assert entry["urls"] == [coturn.url(transport)]
    expiry, user = entry["username"].split(":", 1)
    assert user == "alice" and started + TTL <= int(expiry) <= int(time.time()) + TTL
    mac = hmac.new(SECRET.encode(), entry["username"].encode(), hashlib.sha1).digest()
    assert entry["credential"] == base64.b64encode(mac).decode()

    # alice offered only coturn's relay address, and the server sends her media there
    relays = relay_candidates(alice.pc.localDescription.sdp)
    assert relays and all(ip == coturn.host for ip, _ in relays), relays
    assert all(61000 <= port <= 61999 for _, port in relays), relays
    selected = (await session_state(server, "relay-alice"))["selectedAddress"]
    assert tuple(selected) in relays, (selected, relays)
    bob_selected = (await session_state(server, bob.session_id))["selectedAddress"]
    assert tuple(bob_selected) not in relays
    assert_secret_not_logged(server)
    # and coturn saw alice's allocation succeed with that username
    log = coturn.log_text()
    assert f"username=<{entry['username']}>" in log or f"user <{entry['username']}>" in log, log[
        -3000:
    ]


async def joined_ice_servers(server: ZvonokServer, chat: str, user: str) -> list[dict[str, Any]]:
    """Join over a plain WebSocket, return ``joined``'s ``iceServers`` and leave."""
    token = await asyncio.to_thread(server.token, user)
    headers = [("Authorization", f"Bearer {token}")]
    async with connect(server.ws_url("chat", chat), additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "join", "roomId": chat, "sessionId": f"s-{user}"}))
        for _ in range(20):
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "joined":
                servers: list[dict[str, Any]] = message["payload"]["iceServers"]
                await ws.send(
                    json.dumps({"type": "leave", "roomId": chat, "sessionId": f"s-{user}"})
                )
                return servers
    raise AssertionError("no joined")


async def allocate(
    coturn: Coturn, username: str, password: str, transport_kind: str = "udp"
) -> tuple[str, int]:
    """A TURN Allocate over UDP (or TCP) with these credentials; the relayed address, or raises."""
    transport, protocol = await turn.create_turn_endpoint(
        asyncio.DatagramProtocol,
        server_addr=(coturn.host, coturn.port),
        username=username,
        password=password,
        lifetime=60,
        transport=transport_kind,
    )
    try:
        address: tuple[str, int] = transport.get_extra_info("sockname")
        return address
    finally:
        transport.close()


async def refused(coturn: Coturn, username: str, password: str) -> int:
    with pytest.raises(stun.TransactionFailed) as caught:
        await allocate(coturn, username, password)
    code: int = caught.value.response.attributes["ERROR-CODE"][0]
    return code


async def test_coturn_accepts_the_minted_credential_and_refuses_bad_ones(
    coturn: Coturn, zvonok_server_factory: ServerFactory
) -> None:
    server = start_zvonok(zvonok_server_factory, coturn, "udp", ZVONOK_LOG_LEVEL="DEBUG")
    chat = server.create_chat(["carol", "dave"])
    [entry] = await joined_ice_servers(server, chat, "carol")
    username, credential = entry["username"], entry["credential"]

    relayed = await allocate(coturn, username, credential)
    assert relayed[0] == coturn.host

    def sign(name: str, secret: str = SECRET) -> str:
        mac = hmac.new(secret.encode(), name.encode(), hashlib.sha1).digest()
        return base64.b64encode(mac).decode()

    expired = f"{int(time.time()) - 60}:carol"
    # the right HMAC for a username whose expiry has passed
    assert await refused(coturn, expired, sign(expired)) == 401
    # a credential made with another secret
    assert await refused(coturn, username, sign(username, "not-the-secret")) == 401
    # the minted credential under a forged (later) expiry or another user
    later = f"{int(username.split(':')[0]) + 86400}:carol"
    assert await refused(coturn, later, credential) == 401
    assert await refused(coturn, f"{username.split(':')[0]}:mallory", credential) == 401
    # coturn's own account: each refused username answered 401 after its authenticated retry
    log = coturn.log_text().splitlines()
    for name in (expired, later, f"{username.split(':')[0]}:mallory"):
        assert any(f"user <{name}>" in line and "error 401" in line for line in log), name
    assert any(
        f"user <{username}>" in line and "ALLOCATE processed, success" in line for line in log
    )
    assert_secret_not_logged(server)


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"ZVONOK_TURN_URLS": '["turn:127.0.0.1:3478"]'}, "have no turn_secret"),
        (
            {"ZVONOK_TURN_URLS": '["turn:127.0.0.1:99999"]', "ZVONOK_TURN_SECRET": SECRET},
            "the port must be 1-65535",
        ),
        ({"ZVONOK_TURN_SECRET": SECRET}, "turn_urls is empty"),
    ],
)
def test_serve_refuses_turn_settings_that_cannot_work(
    env: dict[str, str], why: str, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "zvonok", "serve", "--host", "127.0.0.1", "--port", "0",
            "--media-port", "0", "--data-dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, env={**os.environ, **env}, timeout=30, check=False
    )
    assert done.returncode != 0 and why in done.stderr, done.stderr
    assert SECRET not in done.stdout + done.stderr


# -- Chromium behind a firewall: only TURN over TCP gets through --------------------------------

IN_NAMESPACE = os.environ.get("ZVONOK_TEST_ICE_TCP_NAMESPACE") == "1"

RELAY_PAIR_JS = """async () => {
  const stats = await window.peer.pc.getStats();
  let transport = null;
  stats.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) transport = r; });
  if (!transport) return null;
  const pair = stats.get(transport.selectedCandidatePairId);
  const pick = (c) => c && { protocol: c.protocol, address: c.address, port: c.port,
                             type: c.candidateType, relayProtocol: c.relayProtocol || null,
                             url: c.url || null };
  return { state: pair.state, bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived,
           local: pick(stats.get(pair.localCandidateId)),
           remote: pick(stats.get(pair.remoteCandidateId)) };
}"""


def counters(namespace: str) -> list[int]:
    """The packets each counted rule of the client namespace's output chain matched, in order."""
    listing = run(
        "ip", "netns", "exec", namespace, NFT, "list", "chain", "inet", "zvonok_test", "out"
    )
    return [
        int(line.split("counter packets", 1)[1].split()[0])
        for line in listing.splitlines()
        if "counter packets" in line
    ]


@pytest.mark.timeout(300)
def test_chromium_without_udp_and_ice_tcp_calls_through_coturn_over_tcp() -> None:
    run_inner("test_inner_chromium_through_coturn_over_tcp", module="test_turn.py", tag="TURN ")


@pytest.mark.skipif(not IN_NAMESPACE, reason="run by the test above in its own namespace")
async def test_inner_chromium_through_coturn_over_tcp(
    zvonok_server_factory: ServerFactory,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    tcp_port = free_port()
    with client_namespace() as namespace:
        coturn = Coturn(tmp_path / "coturn", SECRET, sfu_ip=SERVER_ADDRESS, host=SERVER_ADDRESS)
        try:
            coturn.wait_ready()
            server = zvonok_server_factory.start(
                extra_args=["--host", "0.0.0.0", "--announce-ip", SERVER_ADDRESS],
                env={
                    "ZVONOK_TURN_URLS": json.dumps([coturn.url("tcp")]),
                    "ZVONOK_TURN_SECRET": SECRET,
                    "ZVONOK_TURN_TTL": str(TTL),
                    "ZVONOK_MEDIA_TCP_PORT": str(tcp_port),
                },
            )
            await through_coturn(server, coturn, namespace, aiortc_peers, tmp_path, request)
            # coturn itself refuses an expired credential, over TCP as well
            expired = f"{int(time.time()) - 60}:alice"
            mac = hmac.new(SECRET.encode(), expired.encode(), hashlib.sha1).digest()
            with pytest.raises(stun.TransactionFailed) as caught:
                await allocate(coturn, expired, base64.b64encode(mac).decode(), "tcp")
            assert caught.value.response.attributes["ERROR-CODE"][0] == 401
        finally:
            coturn.stop()


async def through_coturn(
    server: ZvonokServer, coturn: Coturn, namespace: str, aiortc_peers: AiortcPeers,
    tmp_path: Path, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    chat = server.create_chat(["alice", "bob"])
    wrapper = tmp_path / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    pages = ReportServer(host=SERVER_ADDRESS)
    # TCP to the server only for the pages, signaling and coturn: not to any media worker's
    # ICE-TCP port (one per worker on a split node)
    allowed = ", ".join(str(port) for port in (pages.port, server.port, coturn.port))
    run("ip", "netns", "exec", namespace, NFT, "add", "rule", "inet", "zvonok_test", "out",
        "ip", "daddr", SERVER_ADDRESS, "tcp", "dport", "!=", f"{{ {allowed} }}", "counter",
        "drop")  # fmt: skip
    chromium = NamespacedChromium(pages, wrapper, errors.Allowed.of(request))
    try:
        session, params = await join_params(
            ReachedAt(server, SERVER_ADDRESS), "chromium-turn", user="alice", room=chat,
            color="red", kind="chat", audio=True, video=True, mode="answer", session_id=None,
            token=None,
        )  # fmt: skip
        params["iceFromJoined"] = "1"
        alice = await chromium._start("chromium-turn(alice)", session, params)
        bob = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
        await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
        await alice.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
        await bob.wait_receiving(from_user="alice", kind="audio", color="red", timeout=WAIT)
        await alice.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)
        pair: dict[str, Any] | None = await alice.page.evaluate(RELAY_PAIR_JS)
        assert pair is not None, "Chromium has no selected candidate pair"
        assert pair["state"] == "succeeded", pair
        assert pair["local"]["type"] == "relay", pair
        assert pair["local"]["relayProtocol"] == "tcp", pair
        assert pair["local"]["address"] == coturn.host, pair
        assert pair["remote"]["address"] == SERVER_ADDRESS, pair
        assert pair["bytesSent"] > 10_000 and pair["bytesReceived"] > 10_000, pair
        udp_dropped, tcp_dropped = counters(namespace)
        assert udp_dropped > 0, "Chromium sent no UDP to the server at all"
        assert tcp_dropped > 0, "Chromium never tried ICE-TCP to a media port"
        log = coturn.log_text()
        assert "user <" in log and ":alice>" in log, log[-3000:]
        print(
            f"TURN Chromium selected pair: {pair}; dropped UDP {udp_dropped}, TCP to the "
            f"media port {tcp_dropped}"
        )
    finally:
        await chromium.close()
        pages.close()
    await chromium.check_errors()
