"""A call across three nodes in real Chromium with the demo page and the SDK (issue 14).

Three dev-mode nodes share one redis-server and one data dir. cat joins through node0 (which
places the room on itself), alice and bob through the two other nodes, whose signaling is relayed
to the owner; everyone sees and hears everyone. Then the owner is killed with SIGKILL: alice and
bob get ``error`` ``node-lost``, the SDK reconnects by itself through the same node, the room is
claimed again elsewhere and they see and hear each other again within 10 s.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser

from .. import test_demo as demo
from ..harness.redis import RedisServer
from ..test_demo import open_demo, sees_and_hears, serve
from ..test_workers import watch_errors
from .test_cluster_calls import HEAL_LIMIT, claimed

#: test_demo's fixtures: a headless Chromium, and the page/server error checks after each test.
browser = demo.browser
check_errors = demo.check_errors

pytestmark = [pytest.mark.cluster, pytest.mark.browser, pytest.mark.timeout(240)]


async def test_a_call_across_three_nodes_heals_when_its_owner_is_killed(
    redis_server: RedisServer, browser: Browser, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        bases = [
            stack.enter_context(
                serve(
                    shared,
                    log_name=f"node{n}.log",
                    started=procs,
                    ZVONOK_CLUSTER_BACKEND="redis",
                    ZVONOK_REDIS_URL=redis_server.url,
                    ZVONOK_NODE_ID=f"node{n}",
                    ZVONOK_CLUSTER_TIMING="0.25",
                )
            )
            for n in range(3)
        ]
        cat = await open_demo(browser, bases[0], "cat", "group", "c1")
        first = await claimed(redis_server, "group", "c1")
        owner = int(first["owner"].removeprefix("node"))
        edges = [n for n in range(3) if n != owner]
        alice = await open_demo(browser, bases[edges[0]], "alice", "group", "c1")
        bob = await open_demo(browser, bases[edges[1]], "bob", "group", "c1")
        for page, name in ((alice, "alice"), (bob, "bob"), (cat, "cat")):
            for peer in {"alice", "bob", "cat"} - {name}:
                await sees_and_hears(page, peer, f"{name} to see and hear {peer}")
        for page in (alice, bob):
            await watch_errors(page)

        killed = time.monotonic()
        procs[owner].kill()
        procs[owner].wait(5)
        healed = [
            await sees_and_hears(alice, "bob", "alice to see bob again", HEAL_LIMIT + 10),
            await sees_and_hears(bob, "alice", "bob to see alice again", HEAL_LIMIT + 10),
        ]
        heal = max(healed) - killed
        second = await claimed(redis_server, "group", "c1")
        print(f"owner node{owner} killed; media back on both sides after {heal:.2f} s; {second}")
        assert second["owner"] != first["owner"] and int(second["epoch"]) > int(first["epoch"])
        assert heal <= HEAL_LIMIT, f"media back only after {heal:.1f} s"
        for page in (alice, bob):
            assert "node-lost" in await page.evaluate("() => window.serverErrors")
            assert await page.evaluate("() => window.reconnects") >= 1
            await page.click("#leave")
