"""ICE over TCP (RFC 6544, passive on the server) against a real ``zvonok serve``.

A Chromium, and separately a Firefox ESR, whose UDP to the server is dropped by an nftables rule
in its own network namespace calls an aiortc peer (plain UDP) through the server: media flows
both ways (colours and tones), the browser's getStats shows its selected candidate pair on TCP
(local ``tcptype active``, remote the server's passive candidate; Firefox reports it in its
POSTed report, ``pairStats=1``), and the rule's counter proves that the browser's UDP really was
dropped. Topology: the outer test re-runs the inner one inside ``unshare -n`` (server
namespace: loopback plus 198.18.0.1 on one end of a veth pair, RFC 2544 space); the inner test
creates the client namespace (198.18.0.2 on the other end) and runs Debian's browser there
through ``ip netns exec``, loading the pages from 198.18.0.1 (a secure origin by flag or pref).

Separately, the TCP port is attacked on loopback while two aiortc peers call: garbage, half
frames, a 65,535-byte length with nothing behind it and 2,000 idle connections against a cap of
300. The call keeps flowing, the server never holds more connections than the cap, and once the
authentication deadline has passed its open file descriptors are back to what they were.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from .harness import errors, firefox
from .harness.aiortc_peer import AiortcPeers
from .harness.chromium import CHROMIUM, CHROMIUM_FLAGS, ChromiumPeers, join_params
from .harness.report_server import ReportServer
from .harness.server import ServerFactory, ZvonokServer, free_port

ROOT = Path(__file__).parents[2]
NFT = shutil.which("nft") or "/usr/sbin/nft"
WAIT = 40.0
IN_NAMESPACE = os.environ.get("ZVONOK_TEST_ICE_TCP_NAMESPACE") == "1"
SERVER_ADDRESS = "198.18.0.1"
CLIENT_ADDRESS = "198.18.0.2"

SELECTED_PAIR_JS = """async () => {
  const stats = await window.peer.pc.getStats();
  let transport = null;
  stats.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId) transport = r; });
  if (!transport) return null;
  const pair = stats.get(transport.selectedCandidatePairId);
  const pick = (c) => c && { protocol: c.protocol, tcpType: c.tcpType || null,
                             address: c.address, port: c.port, type: c.candidateType };
  return { state: pair.state, bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived,
           local: pick(stats.get(pair.localCandidateId)),
           remote: pick(stats.get(pair.remoteCandidateId)) };
}"""


def run(*argv: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"
    return result.stdout


def run_inner(test: str, module: str = "test_ice_tcp.py", tag: str = "ICE-TCP ") -> None:
    """Run ``test`` of ``module`` inside a fresh network namespace (the server's); print the
    inner output's lines that carry ``tag``."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    assert unshare and ip, "unshare and ip (util-linux, iproute2) are needed for this test"
    assert os.access(NFT, os.X_OK), "nft (Debian's nftables) is needed for this test"
    assert os.geteuid() == 0, "creating a veth pair and a named namespace needs root"
    inner = (
        f"{ip} link set lo up && {sys.executable} -m pytest -q -s -p no:cacheprovider "
        f"tests/integration/{module}::{test}"
    )
    result = subprocess.run(
        [unshare, "-n", "sh", "-c", inner],
        cwd=ROOT,
        env={**os.environ, "ZVONOK_TEST_ICE_TCP_NAMESPACE": "1"},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "1 passed" in output, output[-6000:]
    print(*[line for line in output.splitlines() if tag in line], sep="\n")


@pytest.mark.timeout(300)
def test_chromium_without_udp_calls_over_ice_tcp() -> None:
    run_inner("test_inner_chromium_over_ice_tcp")


@pytest.mark.timeout(300)
def test_firefox_without_udp_calls_over_ice_tcp() -> None:
    run_inner("test_inner_firefox_over_ice_tcp")


@contextmanager
def client_namespace(extra_rules: str = "") -> Iterator[str]:
    """A named namespace joined to ours by a veth pair; its UDP to us dropped (and counted);
    ``extra_rules``: more nftables rules for its output chain (``table inet zvonok_test``)."""
    name = f"zvonok-tcp-{os.getpid()}"
    run("ip", "netns", "add", name)
    try:
        run("ip", "link", "add", "zvs0", "type", "veth", "peer", "name", "zvc0", "netns", name)
        run("ip", "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "zvs0")
        run("ip", "link", "set", "zvs0", "up")
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", name, "addr", "add", f"{CLIENT_ADDRESS}/24", "dev", "zvc0")
        run("ip", "-n", name, "link", "set", "zvc0", "up")
        rules = (
            "table inet zvonok_test {\n"
            "  chain out {\n"
            "    type filter hook output priority 0; policy accept;\n"
            f"    ip daddr {SERVER_ADDRESS} meta l4proto udp counter drop\n"
            f"{extra_rules}"
            "  }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", name, NFT, "-f", "-"],
            input=rules, text=True, check=True, timeout=30,
        )  # fmt: skip
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


def dropped_udp(namespace: str) -> int:
    """Packets counted so far by the client namespace's (first) output rule: the UDP it dropped,
    or whatever else a test's namespace counts there."""
    listing = run(
        "ip", "netns", "exec", namespace, NFT, "list", "chain", "inet", "zvonok_test", "out"
    )
    for line in listing.splitlines():
        if "counter packets" in line:
            return int(line.split("counter packets", 1)[1].split()[0])
    raise AssertionError(f"no counter in {listing}")


class NamespacedChromium(ChromiumPeers):
    """Chromium started in another network namespace, loading pages from a non-loopback origin;
    it bypasses the proxy settings for ``reach`` (the server address the namespace can reach)."""

    def __init__(
        self,
        pages: ReportServer,
        executable: Path,
        allowed: errors.Allowed,
        reach: str = SERVER_ADDRESS,
    ) -> None:
        super().__init__(pages, allowed)
        self.executable = executable
        self.reach = reach

    async def browser(self) -> Browser:
        if self._browser is None:
            self._playwright = await async_playwright().start()
            flags = [
                *CHROMIUM_FLAGS,
                f"--unsafely-treat-insecure-origin-as-secure={self.pages.origin}",
                f"--proxy-bypass-list={self.reach}",  # the namespace reaches nothing else
            ]
            self._browser = await self._playwright.chromium.launch(
                executable_path=str(self.executable), headless=True, args=flags
            )
        return self._browser


class ReachedAt:
    """A server as seen from the client namespace (its WebSocket URL on another address)."""

    def __init__(self, server: ZvonokServer, host: str) -> None:
        self.server = server
        self.host = host

    def ws_url(self, kind: str, room_id: str) -> str:
        return self.server.ws_url(kind, room_id).replace(self.server.host, self.host, 1)

    def token(self, user: str, ttl: float = 3600.0) -> str:
        return self.server.token(user, ttl)


@pytest.mark.skipif(not IN_NAMESPACE, reason="run by test_chromium_without_udp_calls_over_ice_tcp")
async def test_inner_chromium_over_ice_tcp(
    zvonok_server_factory: ServerFactory,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    with client_namespace() as namespace:
        server = zvonok_server_factory.start(
            extra_args=["--host", "0.0.0.0", "--announce-ip", SERVER_ADDRESS]
        )
        chat = server.create_chat(["alice", "bob"])
        wrapper = tmp_path / "chromium-in-namespace"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
        wrapper.chmod(0o755)
        pages = ReportServer(host=SERVER_ADDRESS)
        chromium = NamespacedChromium(pages, wrapper, errors.Allowed.of(request))
        try:
            alice = await chromium.open(
                ReachedAt(server, SERVER_ADDRESS), user="alice", room=chat, color="red"
            )
            bob = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
            await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
            await alice.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
            await bob.wait_receiving(from_user="alice", kind="audio", color="red", timeout=WAIT)
            await alice.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)
            pair: dict[str, Any] | None = await alice.page.evaluate(SELECTED_PAIR_JS)
            assert pair is not None, "Chromium has no selected candidate pair"
            assert pair["state"] == "succeeded", pair
            assert pair["local"]["protocol"] == "tcp", pair
            assert pair["local"]["tcpType"] == "active", pair
            assert pair["remote"]["protocol"] == "tcp", pair
            assert pair["remote"]["tcpType"] == "passive", pair
            assert pair["remote"]["address"] == SERVER_ADDRESS, pair
            assert pair["bytesSent"] > 10_000 and pair["bytesReceived"] > 10_000, pair
            dropped = dropped_udp(namespace)
            assert dropped > 0, "Chromium sent no UDP to the server at all"
            print(f"ICE-TCP Chromium selected pair: {pair}; UDP packets dropped: {dropped}")
        finally:
            await chromium.close()
            pages.close()
        await chromium.check_errors()


@pytest.mark.skipif(not IN_NAMESPACE, reason="run by test_firefox_without_udp_calls_over_ice_tcp")
async def test_inner_firefox_over_ice_tcp(
    zvonok_server_factory: ServerFactory,
    aiortc_peers: AiortcPeers,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with client_namespace() as namespace:
        server = zvonok_server_factory.start(
            extra_args=["--host", "0.0.0.0", "--announce-ip", SERVER_ADDRESS]
        )
        chat = server.create_chat(["alice", "bob"])
        wrapper = tmp_path / "firefox-in-namespace"
        real = shutil.which(firefox.FIREFOX) or firefox.FIREFOX
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {real} "$@"\n')
        wrapper.chmod(0o755)
        monkeypatch.setattr(firefox, "FIREFOX", str(wrapper))
        # The pages' origin is 198.18.0.1: secure for getUserMedia, and not through the dead proxy.
        monkeypatch.setitem(firefox.FIREFOX_PREFS, "dom.securecontext.allowlist", SERVER_ADDRESS)
        no_proxy = f"{firefox.FIREFOX_PREFS['network.proxy.no_proxies_on']}, {SERVER_ADDRESS}"
        monkeypatch.setitem(firefox.FIREFOX_PREFS, "network.proxy.no_proxies_on", no_proxy)
        pages = ReportServer(host=SERVER_ADDRESS)
        peers = firefox.FirefoxPeers(pages, errors.Allowed.of(request))
        try:
            session, params = await join_params(
                ReachedAt(server, SERVER_ADDRESS), "firefox-tcp", user="alice", room=chat,
                color="red", kind="chat", audio=True, video=True, mode="answer",
                session_id=None, token=None,
            )  # fmt: skip
            params["pairStats"] = "1"
            alice = await peers._start("firefox-tcp(alice)", "firefox-tcp", session, params)
            bob = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
            await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
            await alice.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
            await bob.wait_receiving(from_user="alice", kind="audio", color="red", timeout=WAIT)
            await alice.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)
            raw = pages.latest("firefox-tcp")
            pair = None if raw is None else raw.get("selectedPair")
            assert pair is not None, "Firefox reported no selected candidate pair"
            assert pair["local"]["protocol"] == "tcp", pair
            assert pair["remote"]["protocol"] == "tcp", pair
            assert pair["remote"]["address"] == SERVER_ADDRESS, pair
            dropped = dropped_udp(namespace)
            assert dropped > 0, "Firefox sent no UDP to the server at all"
            print(f"ICE-TCP Firefox selected pair: {pair}; UDP packets dropped: {dropped}")
        finally:
            await peers.close()
            pages.close()
        peers.check_errors()


# -- hostile input on the TCP port ----------------------------------------------------------


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def server_fds_settle(pid: int, limit: int, within: float) -> int:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    count = open_fds(pid)
    while count > limit and loop.time() < deadline:
        await asyncio.sleep(0.25)
        count = open_fds(pid)
    return count


def connect_many(port: int, count: int) -> list[socket.socket]:
    """``count`` TCP connections to the port (non-blocking connects, then waited for)."""
    socks = []
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
    return socks


def send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:
        pass  # already closed by the server: what we want anyway


CAP = 300
AUTH_TIMEOUT = 3


@pytest.mark.timeout(240)
async def test_hostile_input_on_the_tcp_port(
    zvonok_server_factory: ServerFactory, aiortc_peers: AiortcPeers
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    tcp_port = free_port()
    server = zvonok_server_factory.start(
        env={
            "ZVONOK_MEDIA_HOST": "127.0.0.1",
            "ZVONOK_MEDIA_TCP_PORT": str(tcp_port),
            "ZVONOK_ICE_TCP_MAX_CONNECTIONS": str(CAP),
            "ZVONOK_ICE_TCP_AUTH_TIMEOUT": str(AUTH_TIMEOUT),
        }
    )
    chat = server.create_chat(["alice", "bob"])
    alice = await aiortc_peers.open(server, user="alice", room=chat, color="red")
    bob = await aiortc_peers.open(server, user="bob", room=chat, color="blue")
    await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
    await alice.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
    async with httpx.AsyncClient() as http:
        state = (await http.get(server.http_url + "/debug/state")).json()
    # The process that listens on tcp_port: the server, or media worker 0 on a node split into
    # workers (worker i listens on media_tcp_port + i).
    pid = state["workers"]["0"]["pid"] if "workers" in state else server.process.pid
    await asyncio.sleep(1.0)
    baseline = open_fds(pid)

    rng = random.Random(4571)
    attackers: list[socket.socket] = []
    try:
        garbage = connect_many(tcp_port, 50)
        half = connect_many(tcp_port, 50)
        longest = connect_many(tcp_port, 50)
        attackers += garbage + half + longest
        await asyncio.sleep(0.5)
        for s in garbage:
            send_quietly(s, rng.randbytes(rng.randrange(1, 3000)))
        for s in half:
            send_quietly(s, b"\x00\x64" + rng.randbytes(10))  # 100 bytes announced, 10 sent
        for s in longest:
            send_quietly(s, b"\xff\xff")  # 65,535 bytes announced, nothing behind
        idle = connect_many(tcp_port, 2000)
        attackers += idle
        peak = baseline
        for _ in range(8):
            await asyncio.sleep(0.25)
            peak = max(peak, open_fds(pid))
        assert peak <= baseline + CAP + 8, (baseline, peak)
        print(f"ICE-TCP hostile: server fds {baseline} before, peak {peak} (cap {CAP})")
        # The call goes on during the flood.
        await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
        await alice.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
        # Without closing anything on our side: the deadline frees every connection.
        settled = await server_fds_settle(pid, baseline, AUTH_TIMEOUT + 10)
        assert settled <= baseline, (baseline, settled)
        print(f"ICE-TCP hostile: server fds {settled} after the deadline")
    finally:
        for s in attackers:
            s.close()
    await bob.wait_receiving(from_user="alice", kind="audio", color="red", timeout=WAIT)
    await alice.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)
    assert await server_fds_settle(pid, baseline, 5) <= baseline
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(server.http_url + "/metrics")).text
        state = (await http.get(server.http_url + "/debug/state")).json()
    closed: dict[str, float] = {}  # summed over workers (each sample has worker="i" on a front)
    paths: dict[str, float] = {}
    for line in metrics.splitlines():
        for prefix, into in (
            ("zvonok_ice_tcp_closed_total{", closed),
            ("zvonok_media_paths{", paths),
        ):
            if line.startswith(prefix):
                label = "reason" if into is closed else "protocol"
                key = line.split(f'{label}="', 1)[1].split('"', 1)[0]
                into[key] = into.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    listener = state["workers"]["0"]["iceTcp"] if "workers" in state else state["iceTcp"]
    print(f"ICE-TCP hostile: closed by reason {closed}; listener {listener}")
    assert closed["evicted"] > 0 and closed["timed_out"] > 0 and closed["refused"] >= 90, closed
    assert listener["connections"] == 0, listener
    assert paths.get("udp") == 2.0, paths
    protocols = [p["selectedProtocol"] for r in state["rooms"].values() for p in r["participants"]]
    assert protocols == ["udp", "udp"], protocols
