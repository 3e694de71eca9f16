"""``zvonok serve`` with ``cluster_backend = "redis"``: two real nodes on one real ``redis-server``
(issue 14; shared design ``cluster.md`` §3).

Both nodes start at the same moment on one data dir (embedded SQLite: schema creation tolerates
the other creator); n2 runs two media workers behind its front. Then: ``zvonok cluster status``
(Redis directly, and through a node's admin API) and ``GET /admin/cluster`` list both nodes with
their media addresses and sane loads, heartbeats that carry a joined session, and the owner of a
room record; a session id bound through n1 cannot be used by another user through n2 (a real
WebSocket join); ``/metrics`` has the ``zvonok_cluster_*`` families. A local node (no Redis) lists
itself and its rooms, and its ``/metrics`` has no cluster family.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from zvonok.cluster.base import Claimed
from zvonok.cluster.connection import RedisTarget, connect
from zvonok.cluster.keys import Keys
from zvonok.cluster.node import RedisCluster
from zvonok.cluster.redis_rooms import RoomLeases
from zvonok.ids import RoomKey

from ..harness.redis import MASTER_NAME, RedisSentinel, RedisServer
from ..harness.server import ServerFactory, ZvonokServer
from ..test_signaling import client

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

TOKEN = "cluster-admin-token-0123456789abcdef"


def node_env(redis: RedisServer, node: str, **extra: str) -> dict[str, str]:
    return {
        "ZVONOK_CLUSTER_BACKEND": "redis",
        "ZVONOK_REDIS_URL": redis.url,
        "ZVONOK_NODE_ID": node,
        "ZVONOK_ADMIN_TOKEN": TOKEN,
        **extra,
    }


def start_together(
    factory: ServerFactory, data_dir: Path, envs: list[dict[str, str]]
) -> list[ZvonokServer]:
    """Start every node at once on one data dir, then wait until each answers."""
    servers = [ZvonokServer(data_dir, env=env) for env in envs]
    factory.servers.extend(servers)
    for server in servers:
        server.wait_ready()
    return servers


async def admin_get(server: ZvonokServer, path: str) -> Any:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(
            server.http_url + path, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == 200, response.text
    return response.json()


async def metrics_text(server: ZvonokServer) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(server.http_url + "/metrics")).text


async def zvonok_cli(*args: str, env: dict[str, str] | None = None) -> str:
    """``python -m zvonok <args>``: its stdout (it must succeed)."""
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "zvonok", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def status_cli(*args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(await zvonok_cli("cluster", "status", "--json", *args))
    return result


async def eventually(check: Callable[[], Awaitable[bool]], wait: float = 10.0) -> None:
    deadline = time.monotonic() + wait
    while not await check():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.2)


def by_id(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["nodeId"]: node for node in status["nodes"]}


async def test_two_nodes_share_redis(
    zvonok_server_factory: ServerFactory, redis_server: RedisServer, tmp_path: Path
) -> None:
    n1, n2 = start_together(
        zvonok_server_factory,
        tmp_path / "shared",
        [
            node_env(redis_server, "n1", ZVONOK_RESUME_GRACE="5", ZVONOK_WORKERS="1"),
            node_env(redis_server, "n2", ZVONOK_RESUME_GRACE="5", ZVONOK_WORKERS="2"),
        ],
    )
    group = n1.create_group(["alice", "bob"])

    # both nodes listed, from Redis and from either node's admin API, with sane loads once the
    # busy start-up is behind them (a front's score comes from its workers' reports, each second)
    async def idle_loads() -> bool:
        nodes = by_id(await status_cli("--redis-url", redis_server.url))
        return len(nodes) == 2 and all(node["load"] < 0.85 for node in nodes.values())

    await eventually(idle_loads)
    for status in (
        await status_cli("--redis-url", redis_server.url),
        await admin_get(n1, "/admin/cluster"),
        await admin_get(n2, "/admin/cluster"),
    ):
        assert status["backend"] == "redis"
        nodes = by_id(status)
        assert set(nodes) == {"n1", "n2"}
        for node in nodes.values():
            assert node["state"] == "serving"
            assert isinstance(node["load"], float) and node["load"] >= 0.0, node
            assert node["heartbeatAgeMs"] is not None and node["heartbeatAgeMs"] < 6000
        assert nodes["n1"]["addresses"] == [f"127.0.0.1:{n1.media_port}"]
        assert nodes["n2"]["addresses"] == [
            f"127.0.0.1:{n2.media_port}",
            f"127.0.0.1:{n2.media_port + 1}",
        ]
    assert (await admin_get(n2, "/admin/cluster"))["node"] == "n2"
    assert (await admin_get(n2, "/admin/cluster"))["health"] == "ok"

    # a session id bound through n1 is not another user's to take through n2 (either worker)
    async with client(n1, "alice", group, kind="group", session="shared") as alice:
        await alice.join()
        for attempt in range(2):
            async with client(n2, "bob", group, kind="group", session="shared") as bob:
                await bob.send("join")
                error = await bob.expect("error")
                assert error["payload"]["code"] == "session-taken", (attempt, error)

        # the heartbeats carry the session and its room
        async def n1_has_the_call() -> bool:
            nodes = by_id(await status_cli("--redis-url", redis_server.url))
            return bool(nodes["n1"]["sessions"] == 1 and nodes["n1"]["rooms"] == 1)

        await eventually(n1_has_the_call)
        # the room's lease names its owner (the node that hosts the call)
        owners = {r["room"]: r for r in (await admin_get(n2, "/admin/cluster"))["rooms"]}
        assert owners[f"group:{group}"]["owner"] == "n1"
        assert owners[f"group:{group}"]["valid"] is True

    # the owner of a room record, valid while its owner's heartbeat holds the same boot_id
    redis = connect(RedisTarget(url=redis_server.url))
    try:
        boot = await redis.hget(Keys().node("n1"), "boot_id")
        assert boot
        claimed = await RoomLeases(redis).claim(RoomKey.parse("group:g9"), "n1", str(boot))
        assert isinstance(claimed, Claimed)
        await redis.hset(Keys().room(RoomKey.parse("chat:ghost")), mapping={
            "owner": "n7", "boot": "gone", "epoch": 1,
        })  # fmt: skip
    finally:
        await redis.aclose()
    rooms = {r["room"]: r for r in (await admin_get(n2, "/admin/cluster"))["rooms"]}
    assert rooms["group:g9"] == {
        "room": "group:g9",
        "owner": "n1",
        "epoch": claimed.epoch,
        "valid": True,
    }
    assert rooms["chat:ghost"]["valid"] is False

    # the table form of the CLI, through a node's admin API (no Redis settings given)
    table = await zvonok_cli(
        "cluster", "status", "--url", n1.http_url, env={"ZVONOK_ADMIN_TOKEN": TOKEN}
    )
    assert "n1*" in table and "n2 " in table and "group:g9" in table

    # /metrics of either node: the cluster families; /readyz shows the cluster state
    for server in (n1, n2):
        async with httpx.AsyncClient(timeout=10) as http:
            ready = (await http.get(server.http_url + "/readyz")).json()
        assert ready == {"status": "ready", "cluster": "ok"}
        text = await metrics_text(server)
        assert 'zvonok_cluster_health{state="ok"} 1.0' in text
        assert "zvonok_cluster_nodes 2.0" in text
        for family in (
            "zvonok_cluster_rooms_owned",
            "zvonok_cluster_heartbeat_age_seconds",
            'zvonok_cluster_lease_renewals_total{result="ok"}',
            "zvonok_cluster_redis_errors_total 0.0",
        ):
            assert family in text, family


async def test_a_local_node_lists_itself(zvonok_server_factory: ServerFactory) -> None:
    server = zvonok_server_factory.start(env={"ZVONOK_ADMIN_TOKEN": TOKEN, "ZVONOK_WORKERS": "1"})
    chat = server.create_chat(["alice", "bob"])
    async with client(server, "alice", chat) as alice:
        await alice.join()
        status = await admin_get(server, "/admin/cluster")
    assert status["backend"] == "local"
    assert [n["nodeId"] for n in status["nodes"]] == [status["node"]]
    node = status["nodes"][0]
    assert node["addresses"] == [f"127.0.0.1:{server.media_port}"]
    assert node["sessions"] == 1 and node["rooms"] == 1
    assert status["rooms"] == [
        {"room": f"chat:{chat}", "owner": status["node"], "epoch": None, "valid": True}
    ]
    assert "zvonok_cluster_" not in await metrics_text(server)
    assert "/admin/cluster" in (await admin_get(server, "/admin/openapi.json"))["paths"]
    async with httpx.AsyncClient(timeout=10) as http:  # the operator token, like every admin path
        assert (await http.get(server.http_url + "/admin/cluster")).status_code == 401


async def test_status_through_sentinel_settings(
    redis_server: RedisServer, redis_sentinel: RedisSentinel, tmp_path: Path
) -> None:
    """``zvonok cluster status --config`` with Sentinel settings finds the master and lists a
    registered node (here a ``RedisCluster`` of this process)."""
    cluster = RedisCluster(connect(RedisTarget(url=redis_server.url)), node_id="n5")
    await cluster.start()
    try:
        config = tmp_path / "cluster.toml"
        config.write_text(
            'cluster_backend = "redis"\n'
            f'redis_sentinels = ["{redis_sentinel.address}"]\n'
            f'redis_master_name = "{MASTER_NAME}"\n'
        )
        status = await status_cli("--config", str(config))
        assert [node["nodeId"] for node in status["nodes"]] == ["n5"]
        assert status["node"] is None and status["backend"] == "redis"
    finally:
        await cluster.close()


async def test_a_node_without_redis_serves_and_says_so(
    zvonok_server_factory: ServerFactory,
) -> None:
    """Redis unreachable from the start (nothing listens on its port): the node comes up
    ``degraded``, stays ready, its gauges say so, and the status endpoint answers 503."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = zvonok_server_factory.start(
        env={
            "ZVONOK_CLUSTER_BACKEND": "redis",
            "ZVONOK_REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "ZVONOK_NODE_ID": "lonely",
            "ZVONOK_ADMIN_TOKEN": TOKEN,
            "ZVONOK_WORKERS": "1",
        }
    )
    async with httpx.AsyncClient(timeout=10) as http:
        ready = await http.get(server.http_url + "/readyz")
        assert ready.status_code == 200 and ready.json()["cluster"] == "degraded"
        status = await http.get(
            server.http_url + "/admin/cluster", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert status.status_code == 503
        assert status.json()["detail"]["error"] == "cluster unavailable"
    text = await metrics_text(server)
    assert 'zvonok_cluster_health{state="degraded"} 1.0' in text
    assert "zvonok_cluster_redis_errors_total 0.0" not in text
