"""IPv6 calls through zvonok with aiortc clients on loopback (issue 16).

The server binds its media socket to ``::`` (dual-stack, one port) and announces ``127.0.0.1``
and ``::1``. Each aiortc client gathers host candidates of one family only (aioice's address
discovery patched per client task, see ``only_family``), so its ICE can pair only with the
server's candidate of that family. "Media both ways" is the usual check (harness/stats.py:
decoded colour and tone of the other side); on top, each client's nominated pair and the server's
``selectedAddress`` show the family the media took. Signalling stays on 127.0.0.1.
"""

from __future__ import annotations

import contextvars
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aioice.ice
import httpx
import pytest

from .harness.aiortc_peer import AiortcPeer, AiortcPeers
from .harness.chromium import ChromiumPeers
from .harness.server import ServerFactory, ZvonokServer
from .test_media import hear_and_see_each_other

pytestmark = pytest.mark.timeout(150)

_ADDRESSES: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "host_addresses", default=("127.0.0.1",)
)


@pytest.fixture(autouse=True)
def per_client_addresses(monkeypatch: pytest.MonkeyPatch, aiortc_peers: AiortcPeers) -> None:
    """aioice gathers the addresses of the client whose task is gathering (after the
    ``aiortc_peers`` fixture's own 127.0.0.1-only patch, which this one replaces)."""
    monkeypatch.setattr(
        aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: list(_ADDRESSES.get())
    )


@contextmanager
def only_family(address: str) -> Iterator[None]:
    """Clients opened inside gather ``address`` only: their tasks copy this context."""
    token = _ADDRESSES.set((address,))
    try:
        yield
    finally:
        _ADDRESSES.reset(token)


def dual_stack_server(factory: ServerFactory) -> ZvonokServer:
    return factory.start(env={"ZVONOK_MEDIA_HOST": "::"}, extra_args=["--announce-ip", "::1"])


def nominated(peer: AiortcPeer) -> tuple[str, str]:
    """(local host, remote host) of the client's nominated ICE pair."""
    hosts: set[tuple[str, str]] = set()
    for transceiver in peer.pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None:
            continue
        connection: Any = dtls.transport._connection
        for pair in connection._nominated.values():
            hosts.add((pair.local_candidate.host, pair.remote_candidate.host))
    assert len(hosts) == 1, f"{peer.name}: nominated pairs {hosts}"
    return hosts.pop()


async def selected_addresses(server: ZvonokServer) -> dict[str, str]:
    """userId → the host of the server's selected address for that session."""
    async with httpx.AsyncClient() as http:
        state = (await http.get(server.http_url + "/debug/state")).json()
    out: dict[str, str] = {}
    for room in state["rooms"].values():
        for participant in room["participants"]:
            address = participant["selectedAddress"]
            assert address is not None and len(address) == 2, participant
            out[participant["userId"]] = address[0]
    return out


async def test_two_aiortc_peers_on_ipv6_loopback(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    server = dual_stack_server(zvonok_server_factory)
    chat = server.create_chat(["alice", "bob"])
    with only_family("::1"):
        a = await aiortc_peers.open(server, user="alice", room=chat, color="red")
        b = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
    await hear_and_see_each_other(a, "red", b, "blue")
    assert nominated(a) == ("::1", "::1") and nominated(b) == ("::1", "::1")
    assert await selected_addresses(server) == {"alice": "::1", "bob": "::1"}


async def test_ipv4_only_and_ipv6_only_clients_in_one_call(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    """The server relays between the families: alice has no IPv6, bob no IPv4."""
    server = dual_stack_server(zvonok_server_factory)
    chat = server.create_chat(["alice", "bob"])
    with only_family("127.0.0.1"):
        a = await aiortc_peers.open(server, user="alice", room=chat, color="red")
    with only_family("::1"):
        b = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
    await hear_and_see_each_other(a, "red", b, "blue")
    assert nominated(a) == ("127.0.0.1", "127.0.0.1")
    assert nominated(b) == ("::1", "::1")
    selected = await selected_addresses(server)
    assert selected == {"alice": "127.0.0.1", "bob": "::1"}  # IPv4 peer shown unmapped
    assert ipaddress.ip_address(selected["bob"]).version == 6


@pytest.mark.browser
async def test_two_chromium_peers_with_media_on_ipv6_loopback_only(
    zvonok_server_factory: ServerFactory,
    chromium_peers: ChromiumPeers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The media socket bound to ``::1`` and announcing only it: Chromium (loopback allowed by
    the harness's flags) must gather and use an IPv6 candidate, or there is no call."""
    monkeypatch.setenv("ZVONOK_TEST_ZERO_CONFIG", "1")  # no default --announce-ip 127.0.0.1
    server = zvonok_server_factory.start(env={"ZVONOK_MEDIA_HOST": "::1"})
    chat = server.create_chat(["alice", "bob"])
    a = await chromium_peers.open(server, user="alice", room=chat, color="red")
    b = await chromium_peers.open(server, user="bob", room=chat, color="blue")
    await hear_and_see_each_other(a, "red", b, "blue")
    # Chromium gathers every local IPv6 address; to ::1 it may send from any of them (fd00::2 here).
    selected = await selected_addresses(server)
    assert sorted(selected) == ["alice", "bob"]
    assert all(ipaddress.ip_address(host).version == 6 for host in selected.values()), selected
