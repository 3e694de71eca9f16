"""A draining node in a Redis cluster (issue 14; shared design ``cluster.md`` §4 "Graceful
drain"): two real ``zvonok serve`` nodes on one real ``redis-server``. ``zvonok drain`` on n1 (a
live call on it keeps it up) turns its heartbeat record ``draining`` at once, not at the next
heartbeat (``zvonok cluster status`` reading Redis sees it too), and placement
(``RedisNodeRegistry.pick``, on its own connection) then sends every new room to n2;
``zvonok drain --cancel`` makes n1 ``serving`` again and pickable; once the call has left, a
SIGTERM ends n1 at once and its record leaves Redis.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest

from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.health import RedisClusterHealth
from zvonok.cluster.redis_nodes import RedisNodeRegistry

from ..harness.redis import RedisServer
from ..harness.server import ServerFactory
from ..test_signaling import client
from .test_serve_cluster import TOKEN, by_id, node_env, status_cli, zvonok_cli

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


async def states(redis: RedisServer) -> dict[str, str]:
    nodes: dict[str, dict[str, Any]] = by_id(await status_cli("--redis-url", redis.url))
    return {node_id: str(node["state"]) for node_id, node in nodes.items()}


async def until_states(redis: RedisServer, want: dict[str, str], wait: float = 8.0) -> None:
    deadline = time.monotonic() + wait
    while (seen := await states(redis)) != want:
        assert time.monotonic() < deadline, f"node states {seen}, not {want}"
        await asyncio.sleep(0.3)


async def published(registry: RedisNodeRegistry, want: dict[str, str]) -> float:
    """How long after the call the node records in Redis had these states (fails after 3 s)."""
    started = time.monotonic()
    while {n.node_id: n.state for n in await registry.nodes()} != want:
        assert time.monotonic() - started < 3.0, "node states not published"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_a_draining_node_gets_no_new_rooms_until_cancelled(
    zvonok_server_factory: ServerFactory, redis_server: RedisServer
) -> None:
    n1 = zvonok_server_factory.start(env=node_env(redis_server, "n1", ZVONOK_WORKERS="1"))
    zvonok_server_factory.start(env=node_env(redis_server, "n2", ZVONOK_WORKERS="1"))
    await until_states(redis_server, {"n1": "serving", "n2": "serving"})
    group = n1.create_group(["alice"])
    drain = ["drain", "--url", n1.http_url, "--token", TOKEN]
    redis = connect(RedisTarget(url=redis_server.url))
    try:
        placement = RedisNodeRegistry(redis, RedisClusterHealth(), node_id="placement-probe")
        async with client(n1, "alice", group, kind="group", session="a1") as alice:
            await alice.join()
            assert (await zvonok_cli(*drain)).startswith("draining: rooms still live")
            # published by a heartbeat at once, not at the next one (every 2 s)
            assert await published(placement, {"n1": "draining", "n2": "serving"}) < 0.5
            await until_states(redis_server, {"n1": "draining", "n2": "serving"})
            assert {await placement.pick() for _ in range(40)} == {"n2"}

            assert (await zvonok_cli(*drain, "--cancel")).strip() == "serving"
            assert await published(placement, {"n1": "serving", "n2": "serving"}) < 0.5
            await until_states(redis_server, {"n1": "serving", "n2": "serving"})
            assert "n1" in {await placement.pick() for _ in range(40)}
            await alice.send("leave")
    finally:
        await redis.aclose()

    started = time.monotonic()
    n1.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(n1.process.wait, 10) == -signal.SIGTERM
    assert time.monotonic() - started < 5
    await until_states(redis_server, {"n2": "serving"})
