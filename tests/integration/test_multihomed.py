"""A multi-homed server: every datagram leaves from the address the client sent it to (issue 16).

Topology (RFC 2544 space; the outer test re-runs the inner one inside ``unshare -n``, the
server's namespace): two client namespaces on separate veth pairs into the server's namespace,
198.18.1.2 ↔ 198.18.1.1 and 198.18.2.2 ↔ 198.18.2.1. The server binds its media socket to
``0.0.0.0`` and announces only 198.18.1.1 (and the harness's 127.0.0.1). The second client
reaches 198.18.1.1 through the second pair (its default route), so the kernel, choosing a source
by route, would answer it from 198.18.2.1: Chromium discards those answers (RFC 8445
§7.2.5.2.1) and the call fails with a DTLS timeout on the server. With ``IP_PKTINFO`` the server
answers from 198.18.1.1 and the call works. A Chromium in each namespace calls the other through
the server: colours and tones arrive both ways, the second one's selected pair is UDP to
198.18.1.1, and its namespace's counter shows that it really went out through the other pair.
ICE-TCP is off so that it cannot carry the call instead. The server runs the compiled path and,
separately, the pure-Python one. Run against a server without the fix,
the second client never connects (checked when the test was written).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from .harness import errors
from .harness.chromium import CHROMIUM
from .harness.report_server import ReportServer
from .harness.server import ServerFactory
from .test_ice_tcp import (
    NFT,
    SELECTED_PAIR_JS,
    WAIT,
    NamespacedChromium,
    ReachedAt,
    dropped_udp,
    run,
    run_inner,
)

IN_NAMESPACE = os.environ.get("ZVONOK_TEST_ICE_TCP_NAMESPACE") == "1"
ANNOUNCED = "198.18.1.1"
OTHER_SERVER_ADDRESS = "198.18.2.1"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", ["compiled", "python"])
def test_a_client_reaching_the_announced_address_through_another_interface(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compiled path (``Demux.drain``, ``sendmsg``/``sendmmsg`` with a source) and the
    pure-Python one (``ZVONOK_PURE_PYTHON=1``: a ``recvmsg`` reader, ``sendmsg``)."""
    monkeypatch.setenv("ZVONOK_PURE_PYTHON", "1" if path == "python" else "0")
    run_inner("test_inner_multihomed_server", module="test_multihomed.py", tag="MULTIHOMED")


@contextmanager
def client_namespace(index: int, *, via_other_pair: bool) -> Iterator[str]:
    """Namespace ``index`` on its own veth pair 198.18.<index>.0/24; with ``via_other_pair`` its
    default route goes through this pair to the server, and its UDP to the announced address
    is counted (nftables) so the test can show that it took that way."""
    name = f"zvonok-mh{index}-{os.getpid()}"
    server_end, client_end = f"zvmh{index}s", f"zvmh{index}c"
    run("ip", "netns", "add", name)
    try:
        run("ip", "link", "add", server_end, "type", "veth", "peer", "name", client_end,
            "netns", name)  # fmt: skip
        run("ip", "addr", "add", f"198.18.{index}.1/24", "dev", server_end)
        run("ip", "link", "set", server_end, "up")
        run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "-n", name, "addr", "add", f"198.18.{index}.2/24", "dev", client_end)
        run("ip", "-n", name, "link", "set", client_end, "up")
        if via_other_pair:
            run("ip", "-n", name, "route", "add", "default", "via", f"198.18.{index}.1")
            rules = (
                "table inet zvonok_test {\n"
                "  chain out {\n"
                "    type filter hook output priority 0; policy accept;\n"
                f"    ip daddr {ANNOUNCED} meta l4proto udp counter accept\n"
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


@pytest.mark.skipif(not IN_NAMESPACE, reason="run by the test above in its own namespace")
async def test_inner_multihomed_server(
    zvonok_server_factory: ServerFactory, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    with ExitStack() as stack:
        direct = stack.enter_context(client_namespace(1, via_other_pair=False))
        around = stack.enter_context(client_namespace(2, via_other_pair=True))
        route = run("ip", "-n", around, "route", "get", ANNOUNCED)
        assert f"via {OTHER_SERVER_ADDRESS}" in route, route
        server = zvonok_server_factory.start(
            extra_args=["--host", "0.0.0.0", "--announce-ip", ANNOUNCED],
            env={"ZVONOK_ICE_TCP": "0", "ZVONOK_MEDIA_HOST": "0.0.0.0"},
        )
        chat = server.create_chat(["alice", "bob"])
        pages = ReportServer(host=ANNOUNCED)
        stack.callback(pages.close)
        browsers = []
        for namespace in (direct, around):
            wrapper = tmp_path / f"chromium-in-{namespace}"
            wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
            wrapper.chmod(0o755)
            browsers.append(
                NamespacedChromium(pages, wrapper, errors.Allowed.of(request), reach=ANNOUNCED)
            )
        try:
            reached = ReachedAt(server, ANNOUNCED)
            alice = await browsers[0].open(reached, user="alice", room=chat, color="red")
            bob = await browsers[1].open(reached, user="bob", room=chat, color="blue")
            await bob.wait_receiving(from_user="alice", color="red", timeout=WAIT)
            await alice.wait_receiving(from_user="bob", color="blue", timeout=WAIT)
            await bob.wait_receiving(from_user="alice", kind="audio", color="red", timeout=WAIT)
            await alice.wait_receiving(from_user="bob", kind="audio", color="blue", timeout=WAIT)
            pair: dict[str, Any] | None = await bob.page.evaluate(SELECTED_PAIR_JS)
            assert pair is not None, "the second Chromium has no selected candidate pair"
            assert pair["state"] == "succeeded", pair
            assert pair["local"]["protocol"] == "udp", pair
            assert pair["local"]["address"] == "198.18.2.2", pair
            assert pair["remote"]["address"] == ANNOUNCED, pair
            assert pair["bytesSent"] > 10_000 and pair["bytesReceived"] > 10_000, pair
            through_other_pair = dropped_udp(around)
            assert through_other_pair > 100, through_other_pair
            print(
                f"MULTIHOMED selected pair: {pair}; UDP to {ANNOUNCED} through the other pair: "
                f"{through_other_pair} packets"
            )
        finally:
            for browser in browsers:
                await browser.close()
        for browser in browsers:
            await browser.check_errors()
